"""Content types of the files a package or sprite task writes, by file name.

The runner stores each file with this type and the playback routes answer with it, so
browser players (hls.js, dash.js, Safari) get what they expect.
"""

from __future__ import annotations

import re

MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt; charset=utf-8",
}
# What a file of a package may be called: flat names made by the worker, nothing else.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def media_type_for(name: str) -> str:
    """The Content-Type of a package file (`init-*.m4s` is an fMP4 header: video/mp4)."""
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot >= 0 else ""
    if ext == ".m4s" and name.startswith("init-"):
        return "video/mp4"
    return MEDIA_TYPES.get(ext, "application/octet-stream")
