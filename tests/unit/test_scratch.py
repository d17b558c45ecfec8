"""Attempt scratch dirs: a dead process's are removed at once, a live one's never."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobs.storage import LocalStorage
from jobs.storage.base import attempt_prefix


def test_clean_orphans_removes_only_dead_processes_dirs_on_this_host(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "blobs")
    mine = store.temp_dir(attempt_prefix(1))
    (mine / "partial.mp4").write_bytes(b"x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    orphan = store.temp_dir(attempt_prefix(2).replace(f"-{os.getpid()}-", f"-{dead_pid}-"))
    (orphan / "partial.mp4").write_bytes(b"y")
    elsewhere = store.temp_dir(f"job-3-some.other.host-{dead_pid}-")  # another machine's
    upload = store.temp_dir("upload-")
    assert store.clean_orphans() == 1
    assert not orphan.exists()
    assert mine.exists() and elsewhere.exists() and upload.exists()
    assert store.clean_orphans() == 0
