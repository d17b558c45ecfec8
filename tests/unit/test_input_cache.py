"""The worker's input cache (`workers.inputcache`): one fetch per digest per process, links
for every later task, a bounded size, nothing left behind by a failed fetch."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from jobs.errors import SourceChanged
from jobs.storage import LocalStorage
from jobs.storage.base import input_cache_prefix
from workers.inputcache import InputCache


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Source:
    """A fetch that writes known bytes and counts its calls (optionally slowly, or failing)."""

    def __init__(self, data: bytes, *, delay: float = 0.0, fail: bool = False) -> None:
        self.data, self.delay, self.fail, self.calls = data, delay, fail, 0

    async def __call__(self, dest: Path) -> int:
        self.calls += 1
        dest.write_bytes(self.data[: len(self.data) // 2])
        await asyncio.sleep(self.delay)
        if self.fail:  # and leaves its partial file: the cache must not count on its fetch
            raise SourceChanged("the bytes did not match")
        dest.write_bytes(self.data)
        return len(self.data)


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs")


def make_cache(store: LocalStorage, max_bytes: int = 1 << 20) -> InputCache:
    return InputCache(lambda: store.temp_dir(input_cache_prefix()), max_bytes)


async def test_a_digest_is_fetched_once_and_linked_for_every_later_task(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache, data = make_cache(store), b"frames" * 1000
    source = Source(data)
    first, second = tmp_path / "a" / "input-0", tmp_path / "b" / "input-0"
    first.parent.mkdir()
    second.parent.mkdir()
    await cache.place(digest_of(data), first, source)
    await cache.place(digest_of(data), second, source)
    assert source.calls == 1 and (cache.fetches, cache.hits) == (1, 1)
    assert first.read_bytes() == data and second.read_bytes() == data
    assert first.stat().st_ino == second.stat().st_ino  # links, not copies
    assert first.stat().st_mode & 0o222 == 0  # read only, as the store's own files
    first.unlink()  # a task's scratch dir removed: the cached copy stays
    third = tmp_path / "c"
    await cache.place(digest_of(data), third, source)
    assert source.calls == 1 and third.read_bytes() == data


async def test_concurrent_tasks_on_one_digest_share_one_fetch(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache, data = make_cache(store), os.urandom(4096)
    source = Source(data, delay=0.05)
    dests = [tmp_path / f"input-{i}" for i in range(4)]
    await asyncio.gather(*(cache.place(digest_of(data), d, source) for d in dests))
    assert source.calls == 1
    assert all(d.read_bytes() == data for d in dests)
    assert cache._locks == {}  # no lock outlives its users


async def test_a_failed_fetch_leaves_nothing_and_the_next_task_fetches_again(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache, data = make_cache(store), b"x" * 100
    bad = Source(data, fail=True)
    with pytest.raises(SourceChanged):
        await cache.place(digest_of(data), tmp_path / "input-0", bad)
    assert not (tmp_path / "input-0").exists()
    assert cache.held_bytes == 0
    root = next(store.tmp.glob("inputs-*"))
    assert list(root.iterdir()) == []  # no partial file
    good = Source(data)
    await cache.place(digest_of(data), tmp_path / "input-0", good)
    assert good.calls == 1 and (tmp_path / "input-0").read_bytes() == data


async def test_the_least_recently_used_inputs_go_first_when_the_cache_is_full(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache = make_cache(store, max_bytes=250)
    blobs = [bytes([i]) * 100 for i in range(3)]
    sources = [Source(b) for b in blobs]
    await cache.place(digest_of(blobs[0]), tmp_path / "0", sources[0])
    await cache.place(digest_of(blobs[1]), tmp_path / "1", sources[1])
    await cache.place(digest_of(blobs[0]), tmp_path / "0b", sources[0])  # 0 used again
    await cache.place(digest_of(blobs[2]), tmp_path / "2", sources[2])  # 1 must go
    assert cache.held_bytes == 200
    await cache.place(digest_of(blobs[0]), tmp_path / "0c", sources[0])
    await cache.place(digest_of(blobs[1]), tmp_path / "1b", sources[1])
    assert [s.calls for s in sources] == [1, 2, 1]
    assert (tmp_path / "1").read_bytes() == blobs[1]  # an evicted entry's links are intact


async def test_an_input_larger_than_the_cache_is_fetched_for_its_task_only(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache, data = make_cache(store, max_bytes=10), b"y" * 100
    source = Source(data)
    for name in ("a", "b"):
        await cache.place(digest_of(data), tmp_path / name, source)
        assert (tmp_path / name).read_bytes() == data
    assert source.calls == 2 and cache.held_bytes == 0


async def test_size_zero_turns_the_cache_off(store: LocalStorage, tmp_path: Path) -> None:
    cache, data = make_cache(store, max_bytes=0), b"z" * 10
    source = Source(data)
    await cache.place(digest_of(data), tmp_path / "a", source)
    await cache.place(digest_of(data), tmp_path / "b", source)
    assert source.calls == 2 and not list(store.tmp.glob("inputs-*"))


async def test_a_swept_cache_dir_is_made_again(store: LocalStorage, tmp_path: Path) -> None:
    cache, data = make_cache(store), b"w" * 10
    source = Source(data)
    await cache.place(digest_of(data), tmp_path / "a", source)
    cache.close()
    assert not list(store.tmp.glob("inputs-*"))
    await cache.place(digest_of(data), tmp_path / "b", source)
    assert source.calls == 2 and (tmp_path / "b").read_bytes() == data


async def test_the_cache_dir_of_a_live_worker_survives_the_age_sweep(
    store: LocalStorage, tmp_path: Path
) -> None:
    cache, data = make_cache(store), b"v" * 10
    await cache.place(digest_of(data), tmp_path / "a", Source(data))
    root = next(store.tmp.glob("inputs-*"))
    old = root.stat().st_mtime - 10 * 86400
    os.utime(root, (old, old))
    stale = store.temp_dir("upload-")
    os.utime(stale, (old, old))
    assert store.clean_temp(3600) == 1
    assert root.exists() and not stale.exists()
