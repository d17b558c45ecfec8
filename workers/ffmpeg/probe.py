"""Probe media files with ffmpeg alone (ffprobe may be absent) and refuse what we won't run.

`ffmpeg -i file` prints the container, duration and streams to stderr and exits; that dump
is parsed here. The probe runs under the same process limits as every other ffmpeg run,
with `-protocol_whitelist file` and a demuxer allowlist (`-format_whitelist`), so a playlist
or a concat list is rejected before its demuxer opens anything it names.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobs import subtitles
from jobs.errors import InvalidRequest, PermanentError
from jobs.tracecontext import traced
from workers.ffmpeg.binary import find_ffmpeg
from workers.ffmpeg.run import Limits, run_ffmpeg, sanitize

# Demuxers we accept. Never hls, dash, concat, sdp, or any other playlist/protocol demuxer.
INPUT_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "gif",
    "image2", "png_pipe", "jpeg_pipe", "ogg", "flv", "wav", "mp3", "flac",
)  # fmt: skip
FORMAT_WHITELIST = ",".join(INPUT_FORMATS)
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe"})

_INPUT = re.compile(r"^Input #0, (?P<fmt>[a-z0-9_,]+), from '")
_DURATION = re.compile(r"^  Duration: (?:(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)\.(?P<f>\d+)|N/A)")
_STREAM = re.compile(
    r"^(?P<indent> {2}| {4})Stream #0:(?P<index>\d+)(?:\[0x[0-9a-f]+\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<codec>[A-Za-z0-9_]+)(?P<rest>.*)$"
)
_PROGRAM = re.compile(r"^  Program \d+")
_SIZE = re.compile(r", (?P<w>\d{1,6})x(?P<h>\d{1,6})(?=[ ,]|$)")
_FPS = re.compile(r", (?P<v>\d+(?:\.\d+)?)(?P<k>k?) (?:fps|tbr)(?=,|$| )")
_ROTATION = re.compile(r"^ +displaymatrix: rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees\s*$")
_NOT_ON_WHITELIST = re.compile(r"^\[(?P<fmt>\w+) @ 0x[0-9a-f]+\] Format not on whitelist")
_BAD_SIZE = re.compile(r"Picture size (?P<w>\d+)x(?P<h>\d+) is invalid")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Stream:
    index: int
    kind: str  # video, audio, subtitle, data, attachment
    codec: str
    width: int | None = None  # as displayed (rotation applied)
    height: int | None = None
    fps: float | None = None
    attached_pic: bool = False  # cover art: not a video track
    rotation: int = 0


@dataclass(frozen=True)
class Probe:
    format_name: str  # ffmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_ms: int | None
    streams: tuple[Stream, ...]
    width: int | None  # of the main video stream, as displayed
    height: int | None
    video_codec: str | None
    has_audio: bool
    size_bytes: int
    video_index: int | None = None  # stream index of the main video stream
    fps: float | None = None

    @property
    def demuxer(self) -> str:
        """A name `-f` accepts for this format."""
        return self.format_name.split(",")[0]

    @property
    def is_image(self) -> bool:
        return self.demuxer in IMAGE_FORMATS

    def metadata(self) -> dict[str, Any]:
        """The JSON-friendly summary stored with jobs and sources."""
        return {
            "format_name": self.format_name,
            "duration_ms": self.duration_ms,
            "width": self.width,
            "height": self.height,
            "video_codec": self.video_codec,
            "has_audio": self.has_audio,
            "size_bytes": self.size_bytes,
            "streams": [asdict(s) for s in self.streams],
        }


def invalid(message: str, **details: Any) -> PermanentError:
    return PermanentError(message, code="invalid_input", details=details or None)


def check_input_path(path: Path, label: str = "the source") -> os.stat_result:
    """An input must be an absolute, plain, regular, non-empty file. Returns its stat."""
    text = str(path)
    if not path.is_absolute() or text.startswith("-") or _CONTROL.search(text) or "%" in text:
        # '%' would make the image2 demuxer read a numbered sequence of other files.
        raise invalid(f"{label} has a path ffmpeg must not be given")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise invalid(f"{label} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise invalid(f"{label} is not a regular file")
    if st.st_size == 0:
        raise invalid(f"{label} is an empty file")
    return st


def input_args(path: Path, demuxer: str | None = None) -> list[str]:
    """The hardened input options for one file: protocol and demuxer allowlists."""
    args = ["-protocol_whitelist", "file", "-format_whitelist", FORMAT_WHITELIST]
    if demuxer is not None:
        if demuxer not in INPUT_FORMATS:
            raise invalid(f"input format {demuxer!r} is not allowed")
        args += ["-f", demuxer]
    return args


@traced("ffmpeg probe")
async def probe(
    path: Path,
    limits: Limits | None = None,
    *,
    ffmpeg: str | None = None,
    label: str = "the source",
) -> Probe:
    """Read a file's container, duration and streams. Raises PermanentError(invalid_input)."""
    limits = limits or Limits()
    st = check_input_path(path, label)
    if st.st_size > limits.max_input_bytes:
        raise invalid(
            f"{label} is {st.st_size} bytes, over the limit of {limits.max_input_bytes}",
            limit_bytes=limits.max_input_bytes,
        )
    exe = ffmpeg or find_ffmpeg()
    argv = [exe, "-hide_banner", "-nostdin", "-loglevel", "info", *input_args(path)]
    argv += ["-i", f"file:{path}"]
    result = await run_ffmpeg(argv, limits, timeout_s=limits.probe_timeout_s, keep_lines=4000)
    redact = {f"file:{path}": "<input>", str(path): "<input>", exe: "ffmpeg"}
    if result.returncode < 0:
        raise invalid(
            f"probing {label} was stopped by a resource limit (signal {-result.returncode})"
        )
    return parse_probe(result.stderr, st.st_size, label, redact)


def parse_probe(lines: list[str], size_bytes: int, label: str, redact: dict[str, str]) -> Probe:
    """Parse the stream dump `ffmpeg -i` prints. Only lines at fixed indents count, so text
    inside metadata (always printed after a `key: ` prefix) cannot pose as a stream."""
    fmt: str | None = None
    duration_ms: int | None = None
    streams: dict[int, Stream] = {}
    in_program = False
    current: int | None = None
    claimed: tuple[int, int] | None = None  # a frame size the decoder refused as invalid
    for line in lines:
        if claimed is None and (m := _BAD_SIZE.search(line)):
            claimed = int(m.group("w")), int(m.group("h"))
        if fmt is None:
            if m := _INPUT.match(line):
                fmt = m.group("fmt")
            continue
        if m := _DURATION.match(line):
            if m.group("h") is not None:
                frac = (m.group("f") + "000")[:3]
                secs = int(m.group("h")) * 3600 + int(m.group("m")) * 60 + int(m.group("s"))
                duration_ms = secs * 1000 + int(frac)
        elif _PROGRAM.match(line):
            in_program = True
        elif (m := _STREAM.match(line)) and (len(m.group("indent")) == 2 or in_program):
            index = int(m.group("index"))
            if index not in streams:
                kind = m.group("kind").lower()
                streams[index] = _stream(index, kind, m.group("codec"), m.group("rest"))
            current = index
        elif current is not None and (m := _ROTATION.match(line)):
            s = streams[current]
            deg = round(float(m.group("deg"))) % 360
            if deg in (90, 270) and s.width and s.height:
                turned = {"width": s.height, "height": s.width, "rotation": deg}
                streams[current] = Stream(**{**asdict(s), **turned})
    if fmt is None:
        raise invalid(_why_unreadable(lines, label, redact))
    if not set(fmt.split(",")) & set(INPUT_FORMATS):
        raise invalid(f"{label} has format {fmt!r}, which is not accepted")
    ordered = tuple(streams[i] for i in sorted(streams))
    video = next((s for s in ordered if s.kind == "video" and not s.attached_pic), None)
    if video is not None and video.width is None and claimed is not None:
        video = Stream(**{**asdict(video), "width": claimed[0], "height": claimed[1]})
    return Probe(
        format_name=fmt,
        duration_ms=duration_ms,
        streams=ordered,
        width=video.width if video else None,
        height=video.height if video else None,
        video_codec=video.codec if video else None,
        has_audio=any(s.kind == "audio" for s in ordered),
        size_bytes=size_bytes,
        video_index=video.index if video else None,
        fps=video.fps if video else None,
    )


def _stream(index: int, kind: str, codec: str, rest: str) -> Stream:
    width = height = None
    fps = None
    if kind == "video":
        if m := _SIZE.search(rest):
            width, height = int(m.group("w")), int(m.group("h"))
        if m := _FPS.search(rest):
            fps = float(m.group("v")) * (1000 if m.group("k") else 1)
    return Stream(index, kind, codec, width, height, fps, "(attached pic)" in rest)


def _why_unreadable(lines: list[str], label: str, redact: dict[str, str]) -> str:
    for line in lines:
        if m := _NOT_ON_WHITELIST.match(line):
            return (
                f"{label} is a {m.group('fmt')!r} file, which is not an accepted media format "
                f"(accepted: {', '.join(INPUT_FORMATS)})"
            )
    text = "\n".join(lines)
    if "moov atom not found" in text:
        return f"{label} is not a readable video (no moov atom: truncated, or not an MP4 at all)"
    if "Invalid data found when processing input" in text:
        return f"{label} is not a video or image file ffmpeg can read"
    return f"{label} cannot be read as media: {sanitize(lines[-4:], redact, 300)}"


def check_probe(
    p: Probe,
    limits: Limits,
    *,
    allow_image: bool = False,
    allow_audio: bool = False,
    label: str = "the source",
) -> Probe:
    """Refuse a probed file that is not a usable video (or image, or audio-only file, if
    allowed) within limits."""
    if len(p.streams) > limits.max_streams:
        raise invalid(
            f"{label} has {len(p.streams)} streams, over the limit of {limits.max_streams}"
        )
    if p.video_index is None and allow_audio and p.has_audio:
        return _check_duration(p, limits, label)
    if p.video_index is None:
        raise invalid(f"{label} has no video stream")
    if p.video_codec == "none":
        raise invalid(f"{label} has a video stream in a codec this ffmpeg cannot decode")
    if not p.width or not p.height:
        raise invalid(f"{label} has a video stream without a readable frame size")
    if p.width * p.height > limits.max_pixels:
        raise invalid(
            f"{label} is {p.width}x{p.height}, over the limit of {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        )
    if p.is_image and not allow_image:
        raise invalid(f"{label} is a still image, not a video (images only work as a watermark)")
    return _check_duration(p, limits, label)


def _check_duration(p: Probe, limits: Limits, label: str) -> Probe:
    if p.duration_ms is not None and p.duration_ms > limits.max_duration_ms:
        raise invalid(
            f"{label} lasts {p.duration_ms / 1000:g} s, over the limit of "
            f"{limits.max_duration_ms / 1000:g} s",
            limit_ms=limits.max_duration_ms,
        )
    return p


async def preflight(
    path: Path,
    limits: Limits | None = None,
    *,
    allow_image: bool = False,
    allow_audio: bool = False,
    ffmpeg: str | None = None,
    label: str = "the source",
) -> Probe:
    """`probe` then `check_probe`: what uploads and executors run on every untrusted input."""
    limits = limits or Limits()
    result = await probe(path, limits, ffmpeg=ffmpeg, label=label)
    return check_probe(
        result, limits, allow_image=allow_image, allow_audio=allow_audio, label=label
    )


def probe_upload(path: Path, limits: Limits | None = None) -> dict[str, Any]:
    """Blocking preflight for `POST /v1/sources` (the API calls it in a worker thread).

    Images pass (an upload may become a watermark); jobs refuse them as main sources.
    Returns the probe summary; a file we would never run raises InvalidRequest (422).
    """
    cues = _subtitle_upload(path)
    if cues is not None:
        return cues
    try:
        result = asyncio.run(
            preflight(path, limits, allow_image=True, allow_audio=True, label="the upload")
        )
    except PermanentError as exc:
        raise InvalidRequest(
            exc.message,
            details=[{"path": "body", "message": exc.message, "allowed": UPLOAD_ALLOWED}],
        ) from None
    return {**result.metadata(), "is_image": result.is_image}


def _subtitle_upload(path: Path) -> dict[str, Any] | None:
    """An SRT or WebVTT upload, read strictly (no ffmpeg): its summary, or None if the file
    is not subtitles at all (then it is probed as media)."""
    st = check_input_path(path, "the upload")
    if st.st_size > subtitles.MAX_BYTES:
        return None
    data = path.read_bytes()
    head = data[:64].lstrip(b"\xef\xbb\xbf")
    if not (head.startswith(b"WEBVTT") or (head[:1].isdigit() and b"-->" in data[:400])):
        return None
    try:
        kind, cues = subtitles.parse(data)
    except subtitles.SubtitleError as exc:
        raise InvalidRequest(
            f"the upload looks like subtitles but is not usable: {exc}",
            details=[{"path": "body", "message": str(exc), "allowed": UPLOAD_ALLOWED}],
        ) from None
    return {"format_name": kind, "subtitles": True, "cues": len(cues), "size_bytes": st.st_size}


UPLOAD_ALLOWED = (
    "a video (mp4, mov, mkv, webm, avi, ts, flv, ogg, gif) with a video stream within the "
    "server's limits, an audio file (mp3, m4a, ogg, wav, flac) for audio outputs, a "
    "png/jpeg image for watermarks, or an SRT/WebVTT file (UTF-8, at most 1 MiB) for subtitles"
)
