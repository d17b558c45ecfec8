"""Probe media files through libavformat's API (PyAV, in a child process: `avprobe.py`) and
refuse what we won't run.

Nothing here parses printed text: the container, duration and streams come from
libavformat's structures, so metadata that imitates a probe line ("Duration: 09:00:00",
"Stream #0:7: Video: h264, 99999x99999") cannot change what the limits see. The child runs
under the same process limits as every ffmpeg run, with `protocol_whitelist=file` and a
demuxer allowlist (`format_whitelist`), so a playlist or a concat list is rejected before
its demuxer opens anything it names. ffprobe is never needed.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs import subtitles
from jobs.errors import InvalidRequest, PermanentError
from jobs.tracecontext import traced
from workers.ffmpeg.avprobe import MediaInfo, bounded, parse_info, read_media
from workers.ffmpeg.run import Limits

# Demuxers we accept. Never hls, dash, concat, sdp, or any other playlist/protocol demuxer.
INPUT_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "gif",
    "image2", "png_pipe", "jpeg_pipe", "ogg", "flv", "wav", "mp3", "flac",
)  # fmt: skip
FORMAT_WHITELIST = ",".join(INPUT_FORMATS)
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe"})

_KINDS = frozenset({"video", "audio", "subtitle", "data", "attachment"})
_NAME = re.compile(r"[a-z0-9_]{1,32}")
_FORMAT = re.compile(r"[a-z0-9_]{1,32}(?:,[a-z0-9_]{1,32}){0,15}")
_MAX_SIDE = 1 << 20  # a frame side beyond this is not a frame size (the pixel limit is lower)
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
    info: MediaInfo | None = field(default=None, compare=False)  # colour, fields, audio layout

    @property
    def demuxer(self) -> str:
        """A name `-f` accepts for this format."""
        return self.format_name.split(",")[0]

    @property
    def is_image(self) -> bool:
        return self.demuxer in IMAGE_FORMATS

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> Probe:
        """A probe again from its stored summary (`metadata()`, kept with blobs and path
        sources). Raises ValueError if it is not one."""
        streams = tuple(Stream(**s) for s in data["streams"])
        video = next((s for s in streams if s.kind == "video" and not s.attached_pic), None)
        return cls(
            format_name=str(data["format_name"]),
            duration_ms=data["duration_ms"],
            streams=streams,
            width=video.width if video else None,
            height=video.height if video else None,
            video_codec=video.codec if video else None,
            has_audio=any(s.kind == "audio" for s in streams),
            size_bytes=int(data["size_bytes"]),
            video_index=video.index if video else None,
            fps=video.fps if video else None,
        )

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


@traced("ffmpeg probe")
async def probe(
    path: Path,
    limits: Limits | None = None,
    *,
    ffmpeg: str | None = None,
    label: str = "the source",
) -> Probe:
    """Read a file's container, duration and streams. Raises PermanentError(invalid_input).

    `ffmpeg` is accepted for callers that name their binary; probing does not run it."""
    del ffmpeg
    limits = limits or Limits()
    st = check_input_path(path, label)
    if st.st_size > limits.max_input_bytes:
        raise invalid(
            f"{label} is {st.st_size} bytes, over the limit of {limits.max_input_bytes}",
            limit_bytes=limits.max_input_bytes,
        )
    data = await read_media(path, FORMAT_WHITELIST, limits, label)
    return parse_media(data, st.st_size, label, limits)


def parse_media(data: dict[str, Any], size_bytes: int, label: str, limits: Limits) -> Probe:
    """Strictly read the child's answer: names from a small alphabet, bounded numbers, and
    nothing the file could have written as text reaches a decision."""
    if isinstance(data.get("error"), dict):
        raise invalid(_why_unreadable(data["error"], label))
    fmt = data.get("format")
    if not isinstance(fmt, str) or not _FORMAT.fullmatch(fmt):
        raise invalid(f"{label} cannot be read as media")
    if not set(fmt.split(",")) & set(INPUT_FORMATS):
        raise invalid(f"{label} has format {fmt!r}, which is not accepted")
    us = bounded(data.get("duration_us"), 0, 10**15)
    raw = data.get("streams")
    if not isinstance(raw, list):
        raise invalid(f"{label} cannot be read as media")
    streams = [_stream(item) for item in raw]
    details: dict[str, Any] = data["video"] if isinstance(data.get("video"), dict) else {}
    video = next((s for s in streams if s.kind == "video" and not s.attached_pic), None)
    if video is not None:
        deg = (bounded(details.get("rotation"), -360, 360) or 0) % 360
        turned = deg in (90, 270) and video.width and video.height
        w, h = (video.height, video.width) if turned else (video.width, video.height)
        video = Stream(**{**asdict(video), "width": w, "height": h, "rotation": deg})
        streams[streams.index(next(s for s in streams if s.index == video.index))] = video
        claimed = data.get("claimed")
        if video.width is None and isinstance(claimed, list) and len(claimed) == 2:
            # The decoder refused this frame size outright; say so in the limit's words.
            cw, ch = (bounded(x, 1, 10**9) or 0 for x in claimed)
            if cw * ch > limits.max_pixels:
                raise invalid(
                    f"{label} is {cw}x{ch}, over the limit of {limits.max_pixels} pixels",
                    limit_pixels=limits.max_pixels,
                )
    return Probe(
        format_name=fmt,
        duration_ms=None if us is None else round(us / 1000),
        streams=tuple(streams),
        width=video.width if video else None,
        height=video.height if video else None,
        video_codec=video.codec if video else None,
        has_audio=any(s.kind == "audio" for s in streams),
        size_bytes=size_bytes,
        video_index=video.index if video else None,
        fps=video.fps if video else None,
        info=parse_info(data),
    )


def _stream(item: Any) -> Stream:
    if not isinstance(item, dict):
        raise invalid("probing gave a stream that is not one")
    index = bounded(item.get("index"), 0, 1 << 16)
    if index is None:
        raise invalid("probing gave a stream without an index")
    kind = item.get("type")
    codec = item.get("codec")
    kind = kind if isinstance(kind, str) and kind in _KINDS else "data"
    codec = codec if isinstance(codec, str) and _NAME.fullmatch(codec) else "none"
    if kind != "video":
        return Stream(index, kind, codec)
    fps = None
    rate = item.get("fps")
    if isinstance(rate, list) and len(rate) == 2:
        num, den = (bounded(x, 1, 1 << 31) for x in rate)
        if num and den and num / den <= 1000:
            fps = round(num / den, 6)
    return Stream(
        index,
        kind,
        codec,
        bounded(item.get("width"), 1, _MAX_SIDE),
        bounded(item.get("height"), 1, _MAX_SIDE),
        fps,
        item.get("attached_pic") is True,
    )


def _why_unreadable(error: dict[str, Any], label: str) -> str:
    kind = error.get("kind")
    fmt = error.get("format")
    if kind == "format_not_allowed" and isinstance(fmt, str) and _FORMAT.fullmatch(fmt):
        return (
            f"{label} is a {fmt!r} file, which is not an accepted media format "
            f"(accepted: {', '.join(INPUT_FORMATS)})"
        )
    if kind == "no_moov":
        return f"{label} is not a readable video (no moov atom: truncated, or not an MP4 at all)"
    if kind == "invalid_data":
        return f"{label} is not a video or image file ffmpeg can read"
    return f"{label} cannot be read as media"


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
    known: Probe | None = None,
) -> Probe:
    """`probe` then `check_probe`: what uploads and executors run on every untrusted input.

    `known` is this content's earlier probe (found by its digest): the file is then not
    read again unless its size differs, but every check runs as for a new file."""
    limits = limits or Limits()
    result = known
    if known is not None:
        st = check_input_path(path, label)
        if st.st_size != known.size_bytes or st.st_size > limits.max_input_bytes:
            result = None
    if result is None:
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
