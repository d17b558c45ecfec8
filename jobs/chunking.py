"""Chunked encoding as a plan: an edit's `chunking` setting, which edits can be chunked, and
the chunk, audio and stitch tasks a chunked edit becomes.

`"chunking": {"mode": "auto" | "on" | "off", "chunk_seconds": 10}`. `auto` (the default)
chunks a source longer than `VIDJOBS_CHUNK_MIN_SECONDS` (120) when the edit allows it and
otherwise runs as one task, saying why in the job's view; `on` refuses an edit that cannot be
chunked (422 naming what stops it); `off` never chunks. The setting is part of the canonical
edit, so part of the key, except when it is the default (keys of existing edits stand).

The plan is fixed at submission from the stored probe's duration: chunk tasks starting at
the times `starts_ms` gives, one audio task and a stitch task depending on them all. Chunks
are `chunk_seconds` long except at the end of the timeline, where they are half as long
(tasks are claimed in plan order, so the short ones come last and the workers finish
together). Each chunk task finds its own frame range from the source's packet index
(`workers.ffmpeg.keyframes`), so all of them agree without talking to each other, and a
chunk's key is the tenant, the source digest and (edit, slot, start times), so a retried or
resubmitted job reuses every chunk that already succeeded.

A package (`package`, an HLS/DASH/CMAF ladder) is chunked per rung: each rung's rendition
task becomes `rung-<h>-chunk-NNNN` tasks and a stitch named like the rendition (`rung-<h>`,
what the package task reads), with one `audio` task for all rungs. Its chunks are cut on the
rung's own constant-frame-rate timeline, a whole number of segments long (`chunk_seconds`
rounded to the nearest multiple of `segment_seconds`, at least one), so every chunk starts
on a segment boundary and the stitched rungs keep the shared fixed GOP.
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
    if req.outputs is not None:
        found.append(("outputs", "named outputs are not chunked yet (one output or a package)"))
    if req.package is not None:
        return found  # a package is made from the source as it is: no operations, no output
    if req.thumbnails is not None and req.outputs is None:
        found.append(("thumbnails", "sprites alone are not an encode to chunk"))
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
    if req.package is not None:
        segment = req.package.segment_seconds
        per = segments_per_chunk(chunking.chunk_seconds, segment)
        n = slots(duration_ms, per * segment)
        return True, (
            f"chunked into {n} chunks of {per * segment} s ({per} segments of {segment} s) "
            "per rung"
        )
    starts = starts_ms(duration_ms, chunking.chunk_seconds)
    tail = len(starts) - _body(duration_ms, chunking.chunk_seconds)
    why = f"chunked into {len(starts)} chunks of about {chunking.chunk_seconds:g} s"
    if tail > 1:
        why += f", the last {tail} of about {_tail_ms(chunking.chunk_seconds) / 1000:g} s"
    return True, why


def segments_per_chunk(chunk_seconds: float, segment_seconds: int) -> int:
    """A package's chunk length in segments: `chunk_seconds` to the nearest whole number of
    segments, at least one (chunks must start on segment boundaries)."""
    return max(1, round(chunk_seconds / segment_seconds))


def slots(duration_ms: int, chunk_seconds: float) -> int:
    return min(MAX_SLOTS, max(1, math.ceil(duration_ms / 1000 / chunk_seconds)))


MIN_CHUNK_MS = 2000  # Chunking.chunk_seconds' own floor


def starts_ms(duration_ms: int, chunk_seconds: float) -> list[int]:
    """Where each chunk of an edit starts, in ms of the source: every `chunk_seconds`, and
    the timeline's last two chunk lengths in chunks of half that (at least 2 s).

    Equal chunks on W workers end in a round that leaves some of them idle, and the stitch
    waits for the last chunk: with 11 near-equal tasks (10 chunks and the audio) on 2
    workers one runs 6 and the other 5 (`bench.chunked`). Short chunks last shrink that tail
    without a chunk plan that knows the worker count. At most MAX_SLOTS chunks (the last one
    then takes the rest)."""
    step = round(chunk_seconds * 1000)
    body = _body(duration_ms, chunk_seconds)
    out = [i * step for i in range(body)]
    at = body * step
    while at < duration_ms or not out:
        out.append(at)
        at += _tail_ms(chunk_seconds)
    return out[:MAX_SLOTS]


def _body(duration_ms: int, chunk_seconds: float) -> int:
    """How many full-length chunks come before the shorter ones: all but the last two
    chunk lengths."""
    return max(0, math.ceil(duration_ms / round(chunk_seconds * 1000)) - 2)


def _tail_ms(chunk_seconds: float) -> int:
    return max(MIN_CHUNK_MS, round(chunk_seconds * 1000) // 2)


def plan_chunks(
    edit: dict[str, Any], inputs: list[dict[str, Any]], duration_ms: int, chunk_seconds: float,
    *, has_audio: bool,
) -> list[TaskPlan]:
    """The audio task (when the output has audio), the chunk tasks and the stitch task.

    `edit` is the canonical edit; `inputs` the job spec's inputs. Each task's spec holds what
    its work depends on and nothing else, so its key is shared by equal work.

    Tasks are claimed in the order they are planned (equal priority: by id), so the audio
    task, which encodes the whole timeline and takes as long as a chunk or longer, comes
    first and runs beside the chunks. Planned after them, it ran alone at the end while the
    other workers waited for the stitch (`bench.chunked`).
    """
    starts = starts_ms(duration_ms, chunk_seconds)
    n = len(starts)
    base = {"inputs": inputs, "starts_ms": starts, "slots": n}
    video = {"kind": "chunk", **base, "edit": video_edit(edit)}
    chunks = [TaskPlan(f"chunk-{i:04d}", "chunk", {**video, "slot": i}) for i in range(n)]
    audio = []
    if has_audio:
        spec = {"kind": "audio", "inputs": inputs[:1], "edit": audio_edit(edit)}
        audio.append(TaskPlan("audio", "audio", spec))
    # The stitch reads only its deps: no inputs for the worker to fetch (the whole source, on
    # a worker that ran no chunk of it). Its key still names the source, through its deps.
    stitch = {"kind": "stitch", **base, "inputs": [], "edit": edit, "audio": has_audio}
    deps = tuple(p.name for p in chunks + audio)
    return [*audio, *chunks, TaskPlan("stitch", "stitch", stitch, deps, publish_as="output")]


_AUDIO_OPS = ("volume", "loudnorm", "mute")
_AUDIO_OUTPUT = ("audio_codec", "audio_bitrate_kbps", "audio_sample_rate", "audio_channels")


def video_edit(edit: dict[str, Any]) -> dict[str, Any]:
    """The canonical edit as its chunks see it: no audio operations or audio settings (a
    chunk has no audio) and no chunking mode, so edits that differ only there (another
    volume, audio bitrate, `auto` or `on`) share their chunks."""
    ops = [op for op in edit["operations"] if op.get("op") not in _AUDIO_OPS]
    output = {k: v for k, v in edit["output"].items() if k not in _AUDIO_OUTPUT}
    output["audio_codec"] = "none"
    return {"source": edit["source"], "operations": ops, "output": output}


def audio_edit(edit: dict[str, Any]) -> dict[str, Any]:
    """The canonical edit as its audio task sees it: the audio operations and settings."""
    ops = [op for op in edit["operations"] if op.get("op") in _AUDIO_OPS[:2]]
    output = {k: v for k, v in edit["output"].items() if k in _AUDIO_OUTPUT}
    return {"source": edit["source"], "operations": ops, "output": output}


_RUNG_FIELDS = (
    "source", "inputs", "height", "video_codec", "video_bitrate_kbps", "segment_seconds",
)  # fmt: skip


def plan_package_chunks(
    plans: list[TaskPlan], duration_ms: int, chunk_seconds: float, *, has_audio: bool
) -> list[TaskPlan]:
    """A package's plan (`jobs.packaging.plan_package`) with each `rendition` task replaced
    by its chunk tasks and a `rung-stitch` task of the same name (the package task reads
    it as it read the rendition), and one `audio` task for every rung, planned first (as
    in `plan_chunks`).

    A chunk's spec is its rung's video settings, the chunk length and its slot, so equal
    chunks of two packages (an HLS and a DASH package of the same ladder) share one key."""
    out: list[TaskPlan] = []
    audio: list[str] = []
    for p in plans:
        if p.kind != "rendition":
            out.append(p)
            continue
        rung = {k: p.spec[k] for k in _RUNG_FIELDS}
        per = segments_per_chunk(chunk_seconds, int(rung["segment_seconds"]))
        n = slots(duration_ms, per * int(rung["segment_seconds"]))
        base = {**rung, "chunk_segments": per}
        names = [f"{p.name}-chunk-{i:04d}" for i in range(n)]
        for i, name in enumerate(names):
            spec = {"kind": "rung-chunk", **base, "slot": i, "last": i == n - 1}
            out.append(TaskPlan(name, "rung-chunk", spec))
        if has_audio and not audio:
            spec = {"kind": "rung-audio", "source": rung["source"], "inputs": rung["inputs"]}
            spec |= {k: p.spec[k] for k in ("audio_codec", "audio_bitrate_kbps")}
            out.insert(0, TaskPlan("audio", "rung-audio", spec))
            audio.append("audio")
        stitch = {
            "kind": "rung-stitch",
            "inputs": [],
            **{k: v for k, v in base.items() if k not in ("source", "inputs")},
            "slots": n,
            "audio": has_audio,
        }
        out.append(TaskPlan(p.name, "rung-stitch", stitch, (*names, *audio)))
    return out
