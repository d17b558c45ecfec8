"""The subtitle file of a job: the uploaded SRT/WebVTT read strictly (jobs.subtitles) and
written again by us into the job's private workdir, moved to the edited timeline.

What ffmpeg then reads is our own file at a path we made: an ASS script for burning in
(the `ass` filter takes its name as a filter argument, so the path is checked to be plain),
or an SRT/WebVTT file for a soft track.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from jobs import subtitles
from jobs.media_ops import SubtitleMode
from jobs.operations import Subtitles, Trim
from jobs.outputs import Container
from jobs.spec import EditRequest
from workers.ffmpeg.probe import check_input_path, invalid

# A path that may stand in a filter graph as the `ass` filter's file name.
PLAIN_PATH = re.compile(r"^/[A-Za-z0-9/_.-]+$")
# Soft track: (file we write, its demuxer, the codec in the output)
_SOFT = {
    Container.MP4: ("srt", "srt", "mov_text"),
    Container.MOV: ("srt", "srt", "mov_text"),
    Container.MKV: ("srt", "srt", "subrip"),
    Container.WEBM: ("vtt", "webvtt", "webvtt"),
}


@dataclass(frozen=True)
class SubtitleFile:
    path: Path
    mode: SubtitleMode
    demuxer: str  # for a soft track
    codec: str  # of a soft track in the output; "ass" when burned in
    cues: int
    language: str | None


def prepare(source: Path, req: EditRequest, workdir: Path) -> SubtitleFile:
    """Parse the uploaded file and write ours. Raises PermanentError(invalid_input)."""
    op = next(o for o in req.operations if isinstance(o, Subtitles))
    st = check_input_path(source, "the subtitle file")
    if st.st_size > subtitles.MAX_BYTES:
        raise invalid(f"the subtitle file is over the limit of {subtitles.MAX_BYTES} bytes")
    try:
        _, cues = subtitles.parse(source.read_bytes())
    except subtitles.SubtitleError as exc:
        raise invalid(f"the subtitle file is not usable: {exc}") from None
    trim = next((o for o in req.operations if isinstance(o, Trim)), None)
    if trim is not None:
        cues = subtitles.shifted(cues, trim.start, trim.end)
    name = f"subs-{secrets.token_hex(8)}"
    if op.mode is SubtitleMode.BURN:
        assert op.style is not None
        path, text = workdir / f"{name}.ass", subtitles.to_ass(cues, op.style.model_dump())
        demuxer, codec = "ass", "ass"
    else:
        ext, demuxer, codec = _SOFT[req.output.container]
        path = workdir / f"{name}.{ext}"
        text = subtitles.to_webvtt(cues) if ext == "vtt" else subtitles.to_srt(cues)
    if not PLAIN_PATH.match(str(path)):
        raise invalid("the job's workdir has a path that cannot be given to a filter")
    if not cues:  # nothing left in the window: an empty track would not mux
        raise invalid("no subtitle cue falls inside the edited timeline")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return SubtitleFile(path, op.mode, demuxer, codec, len(cues), op.language)
