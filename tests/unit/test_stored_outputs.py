"""A stored output is immutable: stored once under its digest, read-only, never rewritten."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jobs.storage import LocalStorage


def finished_file(store: LocalStorage, data: bytes) -> Path:
    path = store.temp_dir("job-1-") / "output.mp4"
    path.write_bytes(data)
    return path


async def test_a_stored_output_is_read_only_and_never_rewritten(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "blobs")
    await store.ensure()
    digest, size = await store.put_file(finished_file(store, b"the first run's bytes"))
    final = store.path_for(digest)
    first = final.stat()
    assert size == first.st_size == len(b"the first run's bytes")
    assert not first.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # Another attempt (or another job) makes the same bytes: the stored file stays as it
    # was, the same inode, never opened for writing, and the new copy is dropped.
    again = finished_file(store, b"the first run's bytes")
    assert await store.put_file(again) == (digest, size)
    later = final.stat()
    assert (later.st_ino, later.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert final.read_bytes() == b"the first run's bytes"
    assert not again.exists()
    assert os.listdir(final.parent) == [final.name]
