"""Child process of `avprobe.py`: print what a file holds as JSON, read through PyAV.

Run as `python -I avchild.py IDLE_S MAX_USES` under rlimits set by the parent
(`avpool.py`): one file per line of stdin, one line of JSON out for each. It imports only
the standard library and PyAV. Everything comes from libavformat's structures (container,
streams, codec parameters), never from printed text, so a title tag that reads "Stream #0:0:
Video: h264, 99999x99999" stays a title tag. The only decoding is the first frame of the
main video stream (for its display rotation and its HDR10 static metadata: mastering display
and content light level side data, as raw numbers), and only when its frame size is within
MAX_PIXELS. The parent checks every value it gets back.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from typing import Any

_BAD_SIZE = re.compile(r"^Picture size (\d{1,9})x(\d{1,9}) is invalid")
_MAX_PACKETS = 64  # packets read looking for the first frame before giving up on it
# libavutil's AVMasteringDisplayMetadata (3 primaries and a white point as x/y AVRationals,
# min and max luminance as AVRationals, has_primaries, has_luminance: 22 ints) and
# AVContentLightMetadata (MaxCLL, MaxFALL: 2 unsigned ints). Any other size is not read.
_MASTERING = struct.Struct("=22i")
_LIGHT = struct.Struct("=2I")


def read(path: str, whitelist: str, max_pixels: int) -> dict[str, Any]:
    import av  # only the child loads libav*
    import av.logging

    av.logging.set_level(av.logging.ERROR)
    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}
    with av.logging.Capture() as logs:
        try:
            container = av.open(path, options=opts)
        except av.error.FFmpegError as exc:
            return {"error": _error(exc, logs)}
        with container:
            out = _describe(av, container, max_pixels)
    claimed = [m.groups() for lvl, name, msg in logs if (m := _BAD_SIZE.match(msg))]
    if claimed:
        out["claimed"] = [int(claimed[0][0]), int(claimed[0][1])]
    return out


def _error(exc: Exception, logs: list[tuple[int, str, str]]) -> dict[str, Any]:
    for _, name, message in logs:
        if message.startswith("Format not on whitelist"):
            return {"kind": "format_not_allowed", "format": name}
        if message.startswith("Not detecting m3u8/hls"):  # a playlist not named .m3u8
            return {"kind": "format_not_allowed", "format": "hls"}
        if message.startswith("moov atom not found"):
            return {"kind": "no_moov"}
    invalid = type(exc).__name__ == "InvalidDataError"
    return {"kind": "invalid_data" if invalid else "unreadable"}


def _describe(av: Any, container: Any, max_pixels: int) -> dict[str, Any]:
    streams: list[dict[str, Any]] = []
    main: Any = None
    audio: Any = None
    for s in container.streams:
        cc: Any = s.codec_context
        codec = cc.codec.canonical_name if cc is not None and cc.codec is not None else "none"
        item: dict[str, Any] = {"index": s.index, "type": s.type, "codec": codec}
        if s.type == "video" and cc is not None:
            rate = s.average_rate or s.base_rate
            pic = bool(s.disposition & av.stream.Disposition.attached_pic)
            item.update(width=cc.width, height=cc.height, attached_pic=pic)
            item["fps"] = [rate.numerator, rate.denominator] if rate else None
            if main is None and not pic:
                main = s
        elif s.type == "audio" and audio is None:
            audio = s
        streams.append(item)
    out: dict[str, Any] = {
        "format": container.format.name,
        "duration_us": container.duration,
        "streams": streams,
    }
    if main is not None:
        out["video"] = _video_details(main.codec_context)
        out["video"].update(_first_frame(container, main, max_pixels))
    if audio is not None:
        cc = audio.codec_context
        out["audio"] = {
            "channels": int(cc.channels),
            "layout": cc.layout.name if cc.layout else None,
            "rate": int(cc.sample_rate),
        }
    return out


def _video_details(cc: Any) -> dict[str, Any]:
    fmt = cc.format
    return {
        "pix_fmt": fmt.name if fmt else None,
        "bits": max((c.bits for c in fmt.components), default=None) if fmt else None,
        "primaries": int(cc.color_primaries),
        "transfer": int(cc.color_trc),
        "matrix": int(cc.colorspace),
        "range": int(cc.color_range),
        "field_order": int(getattr(cc, "field_order", 0) or 0),
    }


def _first_frame(container: Any, stream: Any, max_pixels: int) -> dict[str, Any]:
    """From the first decoded frame: the display rotation (PyAV exposes it on frames, not on
    streams; None when not read: too big to decode, or no frame), and the mastering display
    and content light level side data as raw integers (absent when the frame has none)."""
    cc = stream.codec_context
    if not cc.width or not cc.height or cc.width * cc.height > max_pixels:
        return {"rotation": None}
    try:
        for n, packet in enumerate(container.demux(stream)):
            if n >= _MAX_PACKETS:
                break
            if not packet.is_keyframe:
                continue  # nothing decodes before the first keyframe
            # Drained at once: a decoder with B-frames (or frame threads) would otherwise hold
            # the first frame back until it had read the next few packets.
            for frame in [*cc.decode(packet), *cc.decode(None)]:
                rotation: float = frame.rotation
                try:
                    return {"rotation": round(rotation), **_hdr10(frame)}
                except Exception:  # odd side data loses the metadata, not the rotation
                    return {"rotation": round(rotation)}
            break
    except Exception:  # a broken first frame: ffmpeg will say so when it runs
        return {"rotation": None}
    return {"rotation": None}


def _hdr10(frame: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in frame.side_data:
        name = side.type.name
        raw = bytes(side)
        if name == "MASTERING_DISPLAY_METADATA" and len(raw) == _MASTERING.size:
            out["mastering"] = list(_MASTERING.unpack(raw))
        elif name == "CONTENT_LIGHT_LEVEL" and len(raw) == _LIGHT.size:
            out["light"] = list(_LIGHT.unpack(raw))
    return out


def serve(idle_s: float, max_uses: int) -> None:
    """Answer one request per line of stdin, `[path, whitelist, max_pixels]`, with one line
    of JSON, until stdin closes, `idle_s` passes without a request, or `max_uses` answers.
    Any error ends the process: the parent then asks a fresh child."""
    import select

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for _ in range(max_uses):
        if not select.select([stdin], [], [], idle_s)[0]:
            return
        line = stdin.readline()
        if not line:
            return
        path, whitelist, max_pixels = json.loads(line)
        stdout.write(json.dumps(read(path, whitelist, int(max_pixels))).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve(float(sys.argv[1]), int(sys.argv[2]))
