"""One probe cache per worker process (real files, real probe): a source known by its
content digest is read once for every kind of task, every check still runs on each use, and
a file whose size differs, or one with no digest, is read again."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from jobs.errors import PermanentError
from jobs.settings import Settings
from tests.ffmpeg.conftest import Media, fake_digest
from workers.compose import make_executor
from workers.ffmpeg.probecache import ProbeCache
from workers.ffmpeg.run import Limits

pytestmark = pytest.mark.ffmpeg
# The module, not the package's `probe` function of the same name.
probe_module = importlib.import_module("workers.ffmpeg.probe")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the real probe opened."""
    opened: list[Path] = []
    real = probe_module.probe

    async def counted(path: Path, *args: object, **kwargs: object) -> probe_module.Probe:
        opened.append(path)
        return await real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe_module, "probe", counted)
    return opened


async def test_a_known_digest_is_read_once_and_checked_every_time(
    ffmpeg_bin: str, media: Media, tmp_path: Path, reads: list[Path]
) -> None:
    cache, limits = ProbeCache(), Limits()
    first = await cache.preflight(media.clip, fake_digest(1), limits, ffmpeg=ffmpeg_bin)
    again = await cache.preflight(media.clip, fake_digest(1), limits, ffmpeg=ffmpeg_bin)
    assert again == first and reads == [media.clip]
    # The checks run on the remembered probe against this call's limits.
    with pytest.raises(PermanentError):
        tight = Limits(max_duration_ms=1000)  # the clip lasts 2 s
        await cache.preflight(media.clip, fake_digest(1), tight, ffmpeg=ffmpeg_bin)
    # Another size under a known digest, or no digest, is read again.
    other = shutil.copyfile(media.small, tmp_path / "other.mkv")
    await cache.preflight(other, fake_digest(1), limits, ffmpeg=ffmpeg_bin)
    await cache.preflight(media.clip, None, limits, ffmpeg=ffmpeg_bin)
    assert reads == [media.clip, other, media.clip]
    assert cache.digests() == [fake_digest(1)]


def test_a_worker_shares_one_cache_across_its_task_kinds() -> None:
    kinds = make_executor("ffmpeg", Settings()).kinds
    caches = {id(kinds["edit"].probes)}  # type: ignore[attr-defined]
    caches |= {id(kinds[k].edit.probes) for k in ("chunk", "audio", "stitch")}  # type: ignore[attr-defined]
    caches |= {
        id(kinds[k].probes)  # type: ignore[attr-defined]
        for k in ("rendition", "package", "sprites", "rung-chunk", "rung-audio", "rung-stitch")
    }
    assert len(caches) == 1
