"""Chunked encoding as a plan: an edit's `chunking` setting, which edits can be chunked, and
the chunk, audio and stitch tasks a chunked edit becomes.

`"chunking": {"mode": "auto" | "on" | "off", "chunk_seconds": 10}`. `auto` (the default)
chunks a source longer than `VIDJOBS_CHUNK_MIN_SECONDS` (120) when the edit allows it and
otherwise runs as one task, saying why in the job's view; `on` refuses an edit that cannot be
chunked (422 naming what stops it); `off` never chunks. The setting is part of the canonical
edit, so part of the key, except when it is the default (keys of existing edits stand).

The plan is fixed at submission from the stored probe's duration: `slots` chunk tasks, one
audio task and a stitch task depending on them all. Each chunk task finds its own frame range
from the source's packet index (`workers.ffmpeg.keyframes`), so all of them agree without
talking to each other, and a chunk's key is the tenant, the source digest and (edit, slot),
so a retried or resubmitted job reuses every chunk that already succeeded.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from jobs.specbase import SpecError, Strict
from jobs.taskplan import TaskPlan

DEFAULT_CHUNK_SECONDS = 10.0
MAX_SLOTS = 1000

# What an operation does that chunks cannot: each needs the whole timeline at once.
_TIMELINE_OPS = {
    "speed": "'speed' changes the timeline across chunk boundaries",
    "concat": "'concat' joins other sources into the timeline",
    "fps": "'fps' changes the frame count, so chunks could not be frame-exact",
    "trim": "'trim' is not chunked yet: the chunks cover the whole source",
    "fade": "'fade' times are relative to the whole output",
    "subtitles": "subtitle cues are timed against the whole output",
    "thumbnail": "a thumbnail is one frame",
}


class Chunking(Strict):
    mode: Literal["auto", "on", "off"] = "auto"
    chunk_seconds: float = Field(default=DEFAULT_CHUNK_SECONDS, ge=2.0, le=600.0)

    def canonical(self) -> dict[str, Any] | None:
        """Its part of the key; None when it is the default (then it is left out)."""
        if self == Chunking():
            return None
        return {"mode": self.mode, "chunk_seconds": self.chunk_seconds}


def blockers(req: Any) -> list[tuple[str, str]]:
    """(JSON path, why) for everything in `req` that stops chunking; empty: chunkable."""
    found = []
    for i, op in enumerate(req.operations):
        if op.op in _TIMELINE_OPS:
            found.append((f"operations[{i}]", _TIMELINE_OPS[op.op]))
        elif op.op == "crop" and getattr(op, "crop", None) == "auto":
            found.append((f"operations[{i}]", "'crop: auto' measures the whole source"))
    out = req.output
    if out.container in ("gif", "jpg", "png"):
        found.append(("output.container", f"'{out.container}' is not a chunkable video"))
    elif str(out.video_codec) == "none" or out.container in ("mp3", "m4a", "ogg", "wav", "flac"):
        found.append(("output.container", "an audio-only output has no video to chunk"))
    if out.two_pass:
        found.append(("output.two_pass", "two-pass rate control plans the whole video"))
    return found


def check(req: Any) -> None:
    """`mode: on` with an edit that cannot be chunked is refused at submission."""
    chunking = req.chunking
    if chunking is None or chunking.mode != "on":
        return
    found = blockers(req)
    if found:
        path, why = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SpecError(path, f"chunking 'on' cannot chunk this edit: {why}{more}")


def decide(req: Any, duration_ms: int | None, min_seconds: float) -> tuple[bool, str]:
    """Whether this edit runs chunked, and the sentence the job's view shows about it."""
    chunking = req.chunking or Chunking()
    if chunking.mode == "off":
        return False, "chunking is off"
    found = blockers(req)
    if found:
        return False, f"not chunked: {found[0][1]} ({found[0][0]})"
    if duration_ms is None:
        return False, "not chunked: the source's duration is unknown"
    if chunking.mode == "auto" and duration_ms <= min_seconds * 1000:
        return False, f"not chunked: the source is not longer than {min_seconds:g} s"
    n = slots(duration_ms, chunking.chunk_seconds)
    return True, f"chunked into {n} chunks of about {chunking.chunk_seconds:g} s"


def slots(duration_ms: int, chunk_seconds: float) -> int:
    return min(MAX_SLOTS, max(1, math.ceil(duration_ms / 1000 / chunk_seconds)))


def plan_chunks(
    edit: dict[str, Any], inputs: list[dict[str, Any]], duration_ms: int, chunk_seconds: float,
    *, has_audio: bool,
) -> list[TaskPlan]:
    """The chunk tasks, the audio task (when the output has audio) and the stitch task.

    `edit` is the canonical edit; `inputs` the job spec's inputs. Each task's spec holds what
    its work depends on and nothing else, so its key is shared by equal work.
    """
    n = slots(duration_ms, chunk_seconds)
    base = {"inputs": inputs, "edit": edit, "chunk_seconds": chunk_seconds, "slots": n}
    plans = [
        TaskPlan(f"chunk-{i:04d}", "chunk", {"kind": "chunk", **base, "slot": i})
        for i in range(n)
    ]
    if has_audio:
        plans.append(TaskPlan("audio", "audio", {"kind": "audio", "inputs": inputs, "edit": edit}))
    stitch = {"kind": "stitch", **base, "audio": has_audio}
    plans.append(
        TaskPlan("stitch", "stitch", stitch, tuple(p.name for p in plans), publish_as="output")
    )
    return plans
