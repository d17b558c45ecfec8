"""Child process of `keyframes.py`: one video stream's packet index as JSON, via PyAV.

Run as `python -I kfchild.py DEMUXER PATH VIDEO_INDEX FORMAT_WHITELIST MAX_PACKETS` under
rlimits set by the parent. It imports only the standard library and PyAV and demuxes
packets (nothing is decoded): every packet's presentation time and keyframe flag, so the
parent can count frames and cut on keyframes without trusting any printed text.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def read(demuxer: str, path: str, video: int, whitelist: str, max_packets: int) -> dict[str, Any]:
    import av  # only the child loads libav*

    opts = {"protocol_whitelist": "file", "format_whitelist": whitelist}
    with av.open(path, format=demuxer, options=opts) as container:
        stream = container.streams[video]
        tb = stream.time_base
        if stream.type != "video" or tb is None:
            raise SystemExit(3)
        pts: list[int] = []
        keys: list[int] = []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue  # the demuxer's flush packet; a packet without a time is not shown
            if len(pts) >= max_packets:
                raise SystemExit(4)
            if packet.is_keyframe:
                keys.append(packet.pts)
            pts.append(packet.pts)
        start = container.start_time
        return {
            "time_base": [tb.numerator, tb.denominator],
            "start_us": int(start) if start is not None else 0,
            "pts": pts,
            "keyframes": keys,
        }


if __name__ == "__main__":
    demuxer, path, video, whitelist, max_packets = sys.argv[1:6]
    out = read(demuxer, path, int(video), whitelist, int(max_packets))
    sys.stdout.write(json.dumps(out, separators=(",", ":")))
