"""The specs of the tasks a package or sprites plan makes, as strict models.

The planner writes them (`model_dump`) and the worker's executors read them back
(`parse_task_spec`), so both sides agree on one shape and a stored spec is re-checked.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from jobs.errors import PermanentError
from jobs.packaging.models import MAX_RUNGS, PackageFormat
from jobs.specbase import Strict

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class TaskInput(BaseModel):
    """A resolved input as in a job spec; the runner reads the extra keys (path, s3)."""

    digest: str = Field(pattern=_DIGEST.pattern)


class _TaskSpec(Strict):
    # Written by the graph when the task is stored: dependency name -> task key (the
    # runner fetches their results by it).
    deps: dict[str, str] = Field(default_factory=dict)


class RenditionSpec(_TaskSpec):
    kind: Literal["rendition"]
    source: dict[str, str]
    inputs: list[TaskInput] = Field(min_length=1, max_length=1)
    height: int = Field(ge=2, le=2160)
    video_codec: Literal["h264"]
    video_bitrate_kbps: int = Field(ge=100, le=50_000)
    audio_codec: Literal["aac"]
    audio_bitrate_kbps: int = Field(ge=32, le=320)
    segment_seconds: int = Field(ge=1, le=30)


class PackageSpec(_TaskSpec):
    kind: Literal["package"]
    inputs: list[TaskInput] = Field(max_length=0)
    format: PackageFormat
    segment_seconds: int = Field(ge=1, le=30)
    renditions: list[str] = Field(min_length=1, max_length=MAX_RUNGS)

    @field_validator("renditions")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names) or not all(_NAME.match(n) for n in names):
            raise ValueError("rendition task names must be unique, short and [a-z0-9-]")
        return names


class SpritesSpec(_TaskSpec):
    kind: Literal["sprites"]
    source: dict[str, str]
    inputs: list[TaskInput] = Field(min_length=1, max_length=1)
    interval_seconds: int = Field(ge=1, le=600)
    width: int = Field(ge=32, le=640)
    columns: int = Field(ge=1, le=20)
    rows: int = Field(ge=1, le=20)


M = TypeVar("M", bound=BaseModel)


def parse_task_spec(model: type[M], spec: dict[str, Any]) -> M:
    """Re-validate a stored task spec; a spec that does not fit fails the task for good."""
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise PermanentError(
            f"the stored {model.__name__} is not valid: {exc.errors()[:3]}", code="invalid_spec"
        ) from None
