"""Subtitle files (SRT, WebVTT) as untrusted input: parsed strictly, bounded, and written back
out by us (ASS for burning in, SRT or WebVTT for a soft track) as plain text cues.

Nothing of the uploaded file reaches ffmpeg as it was: only cue times (integer ms) and cue
text with markup, control characters and ASS override syntax removed, in a file this
service writes to a private path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.timecode import MAX_MS

MAX_BYTES = 1024 * 1024
MAX_CUES = 20_000
MAX_LINES = 8
MAX_LINE_CHARS = 500

_TIME = r"(?:(\d{1,2}):)?(\d{2}):(\d{2})[.,](\d{3})"
_TIMING = re.compile(rf"^{_TIME}\s+-->\s+{_TIME}(?:\s+[^\n]*)?$")
_TAG = re.compile(r"<[^<>]{0,200}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


class SubtitleError(ValueError):
    """The file is not an SRT or WebVTT file within the limits; the message says where."""


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def parse(data: bytes) -> tuple[str, list[Cue]]:
    """('srt' | 'webvtt', cues) of an uploaded file, or SubtitleError."""
    if len(data) > MAX_BYTES:
        raise SubtitleError(f"a subtitle file may be at most {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubtitleError(f"a subtitle file must be UTF-8 (bad byte at {exc.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text.strip("\n")) if b.strip()]
    if not blocks:
        raise SubtitleError("the subtitle file has no cues")
    kind = "webvtt" if blocks[0].startswith("WEBVTT") else "srt"
    if kind == "webvtt":
        first = blocks[0].split("\n", 1)[0]
        if first != "WEBVTT" and not first.startswith(("WEBVTT ", "WEBVTT\t")):
            raise SubtitleError("a WebVTT file must start with the line 'WEBVTT'")
        blocks = blocks[1:]
    cues: list[Cue] = []
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if kind == "webvtt" and lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        if "-->" not in lines[0]:
            lines = lines[1:]  # a cue number (SRT) or cue identifier (WebVTT)
        if not lines or not (m := _TIMING.match(lines[0].strip())):
            raise SubtitleError(f"cue {number} has no timing line like '00:00:01,000 --> ...'")
        start, end = _ms(m.groups()[:4]), _ms(m.groups()[4:])
        if end <= start or end > MAX_MS:
            raise SubtitleError(f"cue {number} must end after it starts, within a day")
        body = tuple(t for t in (_clean(line) for line in lines[1 : 1 + MAX_LINES]) if t)
        if body:
            cues.append(Cue(start, end, body))
        if len(cues) > MAX_CUES:
            raise SubtitleError(f"a subtitle file may have at most {MAX_CUES} cues")
    if not cues:
        raise SubtitleError("the subtitle file has no cues with text")
    return kind, cues


def _ms(groups: tuple[str | None, ...]) -> int:
    h, m, s, ms = (int(g or 0) for g in groups)
    if m >= 60 or s >= 60:
        raise SubtitleError("minutes and seconds in a cue time must be below 60")
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def _clean(line: str) -> str:
    """Plain text: no markup, no control or bidi-override characters, no ASS overrides."""
    text = _CONTROL.sub("", _TAG.sub("", line))
    text = text.replace("{", "(").replace("}", ")").replace("\\", "/")
    return text.strip()[:MAX_LINE_CHARS]


def shifted(cues: list[Cue], start_ms: int, end_ms: int | None) -> list[Cue]:
    """The cues of the window [start, end) of the timeline, moved to start at 0."""
    out = []
    for c in cues:
        s, e = max(c.start_ms, start_ms), c.end_ms if end_ms is None else min(c.end_ms, end_ms)
        if e > s:
            out.append(Cue(s - start_ms, e - start_ms, c.lines))
    return out


def _clock(ms: int, sep: str) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, rest = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{rest:03d}"


def to_srt(cues: list[Cue]) -> str:
    return "".join(
        f"{i}\n{_clock(c.start_ms, ',')} --> {_clock(c.end_ms, ',')}\n"
        + "\n".join(c.lines)
        + "\n\n"
        for i, c in enumerate(cues, start=1)
    )


def to_webvtt(cues: list[Cue]) -> str:
    body = "".join(
        f"{_clock(c.start_ms, '.')} --> {_clock(c.end_ms, '.')}\n"
        + "\n".join(line.replace("-->", "->") for line in c.lines)
        + "\n\n"
        for c in cues
    )
    return "WEBVTT\n\n" + body


def to_ass(cues: list[Cue], style: dict[str, object]) -> str:
    """An ASS script with one style made from the op's bounded style fields."""
    play_h = 288
    size = round(int(str(style["size"])) * play_h / 100)
    colour = _ASS_COLOURS[str(style["color"])]
    align = {"bottom": 2, "middle": 5, "top": 8}[str(style["position"])]
    box = 3 if style["background"] else 1
    margin = round(int(str(style["margin"])) * play_h / 100)
    bold = -1 if style["bold"] else 0
    outline = int(str(style["outline"]))
    head = (
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n"
        "ScaledBorderAndShadow: yes\nWrapStyle: 0\n\n[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
        f"Style: Default,DejaVu Sans,{size},{colour},&H000000FF,&H00000000,&H80000000,{bold},"
        f"0,0,0,100,100,0,0,{box},{outline},0,{align},10,10,{margin},1\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    )
    events = "".join(
        f"Dialogue: 0,{_ass_time(c.start_ms)},{_ass_time(c.end_ms)},Default,,0,0,0,,"
        + "\\N".join(c.lines)
        + "\n"
        for c in cues
    )
    return head + events


def _ass_time(ms: int) -> str:
    cs = ms // 10
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, rest = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{rest:02d}"


_ASS_COLOURS = {  # &HAABBGGRR
    "white": "&H00FFFFFF",
    "yellow": "&H0000FFFF",
    "cyan": "&H00FFFF00",
    "green": "&H0000FF00",
    "black": "&H00000000",
}
