"""The package-side executors by task kind, for the runner's `kind -> Executor` registry."""

from __future__ import annotations

from workers.executor import Executor
from workers.ffmpeg.package import PackageExecutor
from workers.ffmpeg.probecache import ProbeCache
from workers.ffmpeg.rendition import RenditionExecutor
from workers.ffmpeg.run import Limits
from workers.ffmpeg.sprites import SpritesExecutor


def packaging_executors(
    limits: Limits | None = None, *, ffmpeg: str | None = None, probes: ProbeCache | None = None
) -> dict[str, Executor]:
    """{"rendition", "package", "sprites"} -> executor, sharing one set of limits and one
    probe cache."""
    probes = probes or ProbeCache()
    return {
        "rendition": RenditionExecutor(limits, ffmpeg=ffmpeg, probes=probes),
        "package": PackageExecutor(limits, ffmpeg=ffmpeg, probes=probes),
        "sprites": SpritesExecutor(limits, ffmpeg=ffmpeg, probes=probes),
    }
