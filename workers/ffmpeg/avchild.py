"""Child process of `avprobe.py`: print one file's codec parameters as JSON, via PyAV.

Run as `python -I avchild.py DEMUXER PATH VIDEO_INDEX AUDIO_INDEX FORMAT_WHITELIST` under
rlimits set by the parent. It imports only the standard library and PyAV, and reads only
the container header and codec parameters (nothing is decoded).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def read(demuxer: str, path: str, video: int, audio: int, whitelist: str) -> dict[str, Any]:
    """The codec parameters of stream `video` and stream `audio` (-1: none)."""
    import av  # only the child loads libav*

    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}
    with av.open(path, format=demuxer, options=opts) as container:
        out: dict[str, Any] = {}
        for stream in container.streams:
            cc: Any = stream.codec_context
            if stream.index == video and stream.type == "video":
                fmt = cc.format
                out["video"] = {
                    "pix_fmt": fmt.name if fmt else None,
                    "bits": max((c.bits for c in fmt.components), default=None) if fmt else None,
                    "primaries": int(cc.color_primaries),
                    "transfer": int(cc.color_trc),
                    "matrix": int(cc.colorspace),
                    "range": int(cc.color_range),
                    "field_order": int(getattr(cc, "field_order", 0) or 0),
                }
            elif stream.index == audio and stream.type == "audio":
                out["audio"] = {
                    "channels": int(cc.channels),
                    "layout": cc.layout.name if cc.layout else None,
                    "rate": int(cc.sample_rate),
                }
        return out


if __name__ == "__main__":
    demuxer, path, video, audio, whitelist = sys.argv[1:6]
    sys.stdout.write(json.dumps(read(demuxer, path, int(video), int(audio), whitelist)))
