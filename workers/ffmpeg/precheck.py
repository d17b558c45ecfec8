"""Submission-time checks of an edit against its sources' probes: what the command builder
would refuse when the job runs, refused before the job is stored, with the JSON path of the
operation or source at fault (422).

It walks the operations with the same frame arithmetic as `command.py` (`scaled`,
`crop_size`, `filters.pad`, `watermark_box`), so the two cannot disagree. Where a size is
unknown before the job runs (`"crop": "auto"`, a source not probed yet) it stops checking
and leaves the rest to the worker, which refuses the same things.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.errors import InvalidRequest, PermanentError
from jobs.media_ops import Loudnorm, Pad
from jobs.operations import Concat, Crop, Rotate, Scale, Watermark
from jobs.outputs import AUDIO_CONTAINERS, VideoCodec
from jobs.spec import EditRequest
from workers.ffmpeg import filters
from workers.ffmpeg.command import VIDEO_CONTAINERS, display_size
from workers.ffmpeg.graph import crop_size, scaled, watermark_box
from workers.ffmpeg.probe import Probe


def check_plan(req: EditRequest, probes: Mapping[str, dict[str, Any] | None]) -> None:
    """Refuse `req` if its operations cannot work on these sources. `probes` maps each
    source's JSON path ("source", "operations[2].source", ...) to its stored probe summary,
    or None where none is known. Raises InvalidRequest naming the path."""
    main = _probe(probes.get("source"))
    if main is None:
        return
    problems = _audio_problems(req, main) + _frame_problems(req, main, probes)
    if problems:
        raise InvalidRequest(problems[0]["message"], details=problems)


def _probe(summary: dict[str, Any] | None) -> Probe | None:
    if summary is None:
        return None
    try:
        return Probe.from_metadata(summary)
    except (KeyError, TypeError, ValueError):  # an old or partial summary: check nothing
        return None


def _audio_problems(req: EditRequest, main: Probe) -> list[dict[str, Any]]:
    if main.has_audio:
        return []
    audio_only = (
        req.output.container in AUDIO_CONTAINERS or req.output.video_codec is VideoCodec.NONE
    )
    if audio_only:
        what = f"a {req.output.container.value} audio output"
    elif any(isinstance(op, Loudnorm) for op in req.operations):
        what = "'loudnorm'"
    else:
        return []
    message = f"{what} needs audio, but the source has no audio track"
    return [{"path": "source", "message": message, "allowed": "a source with an audio track"}]


def _frame_problems(
    req: EditRequest, main: Probe, probes: Mapping[str, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    out = req.output
    if out.container in AUDIO_CONTAINERS or out.video_codec is VideoCodec.NONE:
        return []
    ops = list(req.operations)
    video_out = out.container in VIDEO_CONTAINERS
    concat = bool(ops) and isinstance(ops[0], Concat)
    try:
        w, h = display_size(main, concat, video_out)
    except PermanentError:
        return []
    for i, op in enumerate(ops):
        try:
            if isinstance(op, Scale):
                w, h = scaled(w, h, op, video_out)
            elif isinstance(op, Crop) and op.crop == "auto":
                return []  # the size is found when the job runs
            elif isinstance(op, Crop):
                w, h = crop_size(op, w, h, video_out)
            elif isinstance(op, Rotate) and op.degrees != 180:
                w, h = h, w
            elif isinstance(op, Pad):
                _, w, h = filters.pad(op, w, h, video_out)
            elif isinstance(op, Watermark):
                mark = _probe(probes.get(f"operations[{i}].source"))
                if mark is not None and mark.width and mark.height:
                    watermark_box(op, mark.width, mark.height, w, h)
        except PermanentError as exc:
            return [{"path": f"operations[{i}]", "message": exc.message, "allowed": _ALLOWED}]
    return []


_ALLOWED = "operations whose sizes and positions fit in the frame they apply to"
