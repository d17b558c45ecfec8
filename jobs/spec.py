"""The edit request: a source, typed operations (`jobs.operations`) and output settings
(`jobs.outputs`), and the cross-field rules that no single field can express.

Every number is bounded and every string is an enum or a checked pattern, so nothing a
client writes can reach a shell, an ffmpeg filter graph or a file path as free text.
`jobs.canonical` gives the form the job key is derived from.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from jobs import chunking
from jobs.chunking import Chunking
from jobs.media_ops import AUDIO_OPS, Fade
from jobs.operations import (
    Concat,
    Crop,
    Operation,
    Scale,
    Speed,
    Subtitles,
    Thumbnail,
    Trim,
    Watermark,
)
from jobs.outputs import (
    ALLOWED_AUDIO,
    ALLOWED_VIDEO,
    AUDIO_RATES,
    CODEC_FIELDS,
    IMAGE_CONTAINERS,
    LOSSLESS_AUDIO,
    MAX_CRF,
    NO_CODEC_CONTAINERS,
    VIDEO_FIELDS,
    AudioCodec,
    Container,
    NamedOutput,
    Output,
    VideoCodec,
    check_controls,
)
from jobs.packaging.models import Package, Thumbnails
from jobs.sources import CONTROL_RE, Source, is_utf8
from jobs.specbase import SpecError, Strict

LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


MIN_RUN_AT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_RUN_AT = dt.datetime(2999, 12, 31, tzinfo=dt.UTC)


class EditRequest(Strict):
    """What a client posts. Only `source`, `operations` and `output` shape the job key."""

    source: Source
    operations: list[Operation] = Field(default_factory=list, max_length=32)
    output: Output = Field(default_factory=Output)
    # Several named outputs instead of `output`: one task each (see `output_request`).
    outputs: list[NamedOutput] | None = Field(default=None, min_length=1, max_length=16)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)
    # Not before this time (RFC 3339 with an offset; the database clock decides). Not part of
    # the key: the same edit scheduled for another time is the same job.
    run_at: dt.datetime | None = None
    # Chunked parallel encoding (jobs.chunking); part of the key unless it is the default.
    chunking: Chunking | None = None
    # Issue 12: an adaptive-bitrate package and thumbnail sprites of the source (tasks of
    # their own, see jobs.packaging). Part of the key when set.
    package: Package | None = None
    thumbnails: Thumbnails | None = None

    @field_validator("run_at")
    @classmethod
    def _run_at(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "run_at needs a time zone offset (RFC 3339, e.g. 2026-12-01T10:00:00Z)"
            )
        if not MIN_RUN_AT <= value <= MAX_RUN_AT:
            raise ValueError("run_at must be between 2000-01-01 and 2999-12-31 (UTC)")
        return value.astimezone(dt.UTC)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not LABEL_KEY_RE.match(key):
                raise ValueError(f"label key {key[:40]!r} must be 1-63 of a-z, 0-9, '_', '.', '-'")
            if len(value) > 256 or CONTROL_RE.search(value) or not is_utf8(value):
                raise ValueError(f"label {key!r} must be at most 256 printable characters")
        return labels

    @model_validator(mode="after")
    def _coherent(self) -> EditRequest:
        if self.outputs is None:
            check_coherent(self)
        else:
            check_outputs(self)
        return self

    def inputs(self) -> list[InputRef]:
        """Every input file of the edit, main source first: the one walk over its sources
        (the service resolves them in this order, the key's canonical form and the worker's
        input files follow it)."""
        found = [InputRef("source", self.source, "main", "the source")]
        for i, op in enumerate(self.operations):
            where = f"operations[{i}]"
            if isinstance(op, Concat):
                found += [
                    InputRef(f"{where}.sources[{j}]", s, "concat", f"concat source {j + 1}")
                    for j, s in enumerate(op.sources)
                ]
            elif isinstance(op, Watermark):
                found.append(InputRef(f"{where}.source", op.source, "watermark", "the watermark"))
            elif isinstance(op, Subtitles):
                found.append(
                    InputRef(f"{where}.source", op.source, "subtitles", "the subtitle file")
                )
        return found


@dataclass(frozen=True)
class InputRef:
    """One input file of an edit: where it is in the request (the JSON path an error
    names), the source, what it is for and how messages call it."""

    path: str
    source: Source
    kind: Literal["main", "concat", "watermark", "subtitles"]
    label: str

    @property
    def is_media(self) -> bool:
        return self.kind != "subtitles"  # a subtitle file is parsed text, never probed

    @property
    def image_ok(self) -> bool:
        return self.kind == "watermark"


_NO_AUDIO_OPS = frozenset({"mute", "volume", "loudnorm"})


def output_request(req: EditRequest, out: NamedOutput) -> EditRequest:
    """The single-output edit that makes one named output: the shared operations, then a
    scale to its size, then (an image) the frame at `at`. Audio operations do not apply to
    an image output and are left out of it."""
    ops: list[Any] = list(req.operations)
    image = out.container in IMAGE_CONTAINERS
    if image:
        ops = [op for op in ops if op.op not in _NO_AUDIO_OPS]
    thumb = ops.pop() if ops and isinstance(ops[-1], Thumbnail) else None
    if out.width is not None or out.height is not None:
        ops.append(Scale.model_validate({"op": "scale", "width": out.width, "height": out.height}))
    if image and thumb is None:
        thumb = Thumbnail.model_validate({"op": "thumbnail", "at_ms": out.at or 0})
    if thumb is not None:
        ops.append(thumb)
    fields = out.model_dump(exclude={"name", "width", "height", "at"}, exclude_unset=True)
    if fields.get("keyframe_interval") is not None:  # integer ms: give it as such
        fields["keyframe_interval_ms"] = fields.pop("keyframe_interval")
    return EditRequest.model_validate(
        {"source": req.source, "operations": ops, "output": Output.model_validate(fields)}
    )


def check_outputs(req: EditRequest) -> None:
    """`outputs`: unique names, not beside `output`, each output coherent with the edit."""
    assert req.outputs is not None
    if "output" in req.model_fields_set:
        raise SpecError("outputs", "give either 'output' or 'outputs', not both")
    seen: set[str] = set()
    for i, out in enumerate(req.outputs):
        if out.name in seen:
            raise SpecError(f"outputs[{i}].name", f"output name {out.name!r} is used twice")
        seen.add(out.name)
        if out.at is not None and out.container not in IMAGE_CONTAINERS:
            raise SpecError(f"outputs[{i}].at", "'at' picks the frame of a jpg or png output")
        try:
            output_request(req, out)
        except ValidationError as exc:
            err = exc.errors()[0]
            cause = (err.get("ctx") or {}).get("error")
            where = cause.path if isinstance(cause, SpecError) else ""
            if where.startswith("output."):
                raise SpecError(f"outputs[{i}]{where.removeprefix('output')}", str(cause)) from None
            message = str(err.get("msg", "")).removeprefix("Value error, ")
            about = f" ({where})" if where else ""
            raise SpecError(f"outputs[{i}]", f"{message}{about}") from None


def check_coherent(req: EditRequest) -> None:
    """Cross-field rules that a single field cannot express."""
    ops = req.operations
    kinds = [op.op for op in ops]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            raise ValueError(f"operation '{kind}' may appear at most once")
    for i, op in enumerate(ops):
        if isinstance(op, Concat) and i != 0:
            raise ValueError("'concat' must be the first operation (it builds the timeline)")
        if isinstance(op, Trim) and any(k != "concat" for k in kinds[:i]):
            raise ValueError("'trim' must come first, or right after 'concat'")
        if isinstance(op, Thumbnail) and i != len(ops) - 1:
            raise ValueError("'thumbnail' must be the last operation")
        if isinstance(op, Crop) and op.crop == "auto" and any(k != "trim" for k in kinds[:i]):
            raise SpecError(
                f"operations[{i}]",
                '"crop": "auto" must come first or right after \'trim\' (it measures the '
                "source's frame), and cannot follow 'concat'",
            )
    if "mute" in kinds and "volume" in kinds:
        raise ValueError("'mute' and 'volume' cannot be combined")
    for name in ("package", "thumbnails"):
        if getattr(req, name) is not None and ops:
            raise SpecError(
                name,
                f"'{name}' is made from the source as it is: it cannot be combined with "
                "operations yet (submit the edit as its own job)",
            )
    out = req.output
    _check_subtitles(req)
    chunking.check(req)
    thumbnail = bool(ops) and isinstance(ops[-1], Thumbnail)
    if thumbnail != (out.container in IMAGE_CONTAINERS):
        raise ValueError(
            "a 'thumbnail' operation needs output container 'jpg' or 'png', and those "
            "containers need a 'thumbnail' operation"
        )
    if out.container in NO_CODEC_CONTAINERS:
        for name in ("video_codec", "audio_codec", *CODEC_FIELDS):
            if getattr(out, name) not in (None, False):
                raise SpecError(
                    f"output.{name}",
                    f"output '{name}' does not apply to container '{out.container}'",
                )
        if "volume" in kinds or "mute" in kinds:
            raise ValueError(f"container '{out.container}' has no audio: drop 'mute'/'volume'")
        _check_audio_ops(req, f"container '{out.container}' has no audio")
        return
    if out.video_codec is not None and out.video_codec not in ALLOWED_VIDEO[out.container]:
        allowed = ", ".join(ALLOWED_VIDEO[out.container])
        raise SpecError(
            "output.video_codec",
            f"video_codec '{out.video_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})",
        )
    if out.audio_codec is not None and out.audio_codec not in ALLOWED_AUDIO[out.container]:
        allowed = ", ".join(ALLOWED_AUDIO[out.container])
        raise SpecError(
            "output.audio_codec",
            f"audio_codec '{out.audio_codec}' is not allowed in '{out.container}' "
            f"(allowed: {allowed})",
        )
    if out.crf is not None and out.video_bitrate_kbps is not None:
        raise ValueError("give either output 'crf' or 'video_bitrate_kbps', not both")
    video = out.video_codec or ALLOWED_VIDEO[out.container][0]
    if video is VideoCodec.NONE:
        _check_audio_only(req)
    elif out.crf is not None and out.crf > MAX_CRF[video]:
        raise ValueError(f"crf for {video} must be at most {MAX_CRF[video]}")
    else:
        check_controls(out, video.value)
    if "mute" in kinds and out.audio_codec not in (None, AudioCodec.NONE):
        raise ValueError("'mute' removes the audio: leave audio_codec out or set it to 'none'")
    if out.audio_codec is AudioCodec.NONE and "volume" in kinds:
        raise ValueError("'volume' needs audio, but audio_codec is 'none'")
    if out.audio_bitrate_kbps is not None and out.audio_codec is AudioCodec.NONE:
        raise ValueError("audio_bitrate_kbps does not apply when audio_codec is 'none'")
    audio = out.audio_codec or ALLOWED_AUDIO[out.container][0]
    if out.audio_bitrate_kbps is not None and audio in LOSSLESS_AUDIO:
        raise SpecError(
            "output.audio_bitrate_kbps", f"audio_bitrate_kbps does not apply to lossless {audio}"
        )
    rates = AUDIO_RATES.get(audio)
    if out.audio_sample_rate is not None and rates and out.audio_sample_rate not in rates:
        raise SpecError(
            "output.audio_sample_rate",
            f"{audio} takes sample rates {', '.join(map(str, rates))}, not {out.audio_sample_rate}",
        )
    if "mute" in kinds or audio is AudioCodec.NONE:
        for name in ("audio_sample_rate", "audio_channels"):
            if getattr(out, name) is not None:
                raise SpecError(f"output.{name}", f"output '{name}' needs audio in the output")
        _check_audio_ops(req, "the output has no audio ('mute' or audio_codec 'none')")


def _check_subtitles(req: EditRequest) -> None:
    for i, op in enumerate(req.operations):
        if not isinstance(op, Subtitles):
            continue
        if op.source.digest is None:
            raise SpecError(
                f"operations[{i}].source",
                "a subtitle file is uploaded first (POST /v1/sources) and given by its digest",
            )
        out = req.output
        if out.container not in SUBTITLE_CONTAINERS or out.video_codec is VideoCodec.NONE:
            allowed = ", ".join(c.value for c in SUBTITLE_CONTAINERS)
            raise SpecError(
                f"operations[{i}]",
                f"subtitles need a video output (allowed containers: {allowed}), "
                f"not '{out.container}'",
            )
        if any(isinstance(o, Speed) for o in req.operations):
            raise SpecError(f"operations[{i}]", "'subtitles' cannot be combined with 'speed'")


SUBTITLE_CONTAINERS = (Container.MP4, Container.MOV, Container.MKV, Container.WEBM)
_VIDEO_OPS_OK_FOR_AUDIO = frozenset({"trim", "speed", "volume", "loudnorm", "fade"})


def _check_audio_ops(req: EditRequest, why: str) -> None:
    for i, op in enumerate(req.operations):
        if op.op in AUDIO_OPS or (isinstance(op, Fade) and not op.video):
            raise SpecError(f"operations[{i}]", f"'{op.op}' needs audio, but {why}")


def _check_audio_only(req: EditRequest) -> None:
    """An output without video: only timeline and audio operations, no video settings."""
    out = req.output
    for name in VIDEO_FIELDS:
        if getattr(out, name) not in (None, False):
            raise SpecError(f"output.{name}", f"output '{name}' needs a video output")
    for i, op in enumerate(req.operations):
        if isinstance(op, Fade) and not op.audio:
            raise SpecError(f"operations[{i}].audio", "an audio-only output can only fade audio")
        if op.op not in _VIDEO_OPS_OK_FOR_AUDIO:
            allowed = ", ".join(sorted(_VIDEO_OPS_OK_FOR_AUDIO))
            raise SpecError(
                f"operations[{i}]",
                f"'{op.op}' needs a video output, but '{out.container}' here is audio only "
                f"(allowed: {allowed})",
            )
    if "mute" in (op.op for op in req.operations) or out.audio_codec is AudioCodec.NONE:
        raise SpecError("output.audio_codec", "an audio-only output needs an audio codec")
