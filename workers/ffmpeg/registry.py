"""The package-side executors by task kind, for the runner's `kind -> Executor` registry."""

from __future__ import annotations

from workers.executor import Executor
from workers.ffmpeg.package import PackageExecutor
from workers.ffmpeg.rendition import RenditionExecutor
from workers.ffmpeg.run import Limits
from workers.ffmpeg.sprites import SpritesExecutor


def packaging_executors(
    limits: Limits | None = None, *, ffmpeg: str | None = None
) -> dict[str, Executor]:
    """{"rendition", "package", "sprites"} -> executor, sharing one set of limits."""
    return {
        "rendition": RenditionExecutor(limits, ffmpeg=ffmpeg),
        "package": PackageExecutor(limits, ffmpeg=ffmpeg),
        "sprites": SpritesExecutor(limits, ffmpeg=ffmpeg),
    }
