"""A job's plan: the tasks an edit request becomes, before any row exists.

A simple edit is one task. Several named outputs, a package (one rendition task per rung and
a package task depending on them) or thumbnail sprites add tasks. Planning is pure: the
request and the sources' stored probes in, `TaskPlan`s out. The service writes the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskPlan:
    """One unit of ffmpeg work, as planned.

    `name`: unique within the job ("main", "720p", "rung-1080", "package", "thumbnails").
    `kind`: picks the worker's executor ("edit", "rendition", "package", "sprites", ...).
    `spec`: the task's own canonical spec (JSON); with the digests it reads, its key.
    `depends_on`: names of tasks in the same plan whose outputs this task reads.
    `publish_as`: where its output appears in the job's output ("package", "thumbnails",
    "outputs.<name>"); None for intermediate work (e.g. the rungs a package task reads).
    """

    name: str
    kind: str
    spec: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    publish_as: str | None = None
