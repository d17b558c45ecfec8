"""A job's inputs, made local and pinned: the bytes ffmpeg reads are the bytes the key names.

Every input is copied into the attempt's scratch dir while it is hashed, and the copy is used
only if its digest equals the one in the job's spec: a blob is streamed from storage; an S3
source is read at the version pinned at submission (`jobs.storage.s3_sources`); those two
are kept, verified, in the worker's input cache (`workers.inputcache`), so the next task on
the same digest gets a link to them without a second fetch. A path
source is opened again without following a symlink at its last component, its real path
re-checked against the source roots, and read from that one open file. A file that changed,
vanished or was replaced by a link since submission fails the attempt permanently with
`source_changed`, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.errors import SourceChanged
from jobs.storage import Storage
from jobs.storage.base import CHUNK
from workers.inputcache import InputCache

if TYPE_CHECKING:
    from jobs.storage.s3_sources import S3Sources

_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


async def fetch_inputs(
    inputs: list[dict[str, Any]],
    storage: Storage,
    workdir: Path,
    roots: list[Path],
    sources: S3Sources,
    cache: InputCache,
) -> list[Path]:
    """Local, verified copies of `spec["inputs"]` (main source first) inside `workdir`."""
    paths = []
    for i, item in enumerate(inputs):
        digest = str(item["digest"])
        if item.get("s3"):  # the version pinned at submission, verified while it streams
            dest = workdir / f"input-{i}"
            await cache.place(digest, dest, functools.partial(sources.fetch, item["s3"], digest))
        elif item.get("path"):
            source = Path(item["path"])
            suffix = source.suffix if _SUFFIX.match(source.suffix) else ""
            dest = workdir / f"input-{i}{suffix}"
            await asyncio.to_thread(copy_path_source, source, digest, roots, dest)
        else:
            dest = workdir / f"input-{i}"
            await cache.place(digest, dest, functools.partial(storage.fetch, digest))
        paths.append(dest)
    return paths


def copy_path_source(path: Path, digest: str, roots: list[Path], dest: Path) -> int:
    """Copy a path source into `dest`, verifying it is still the file that was submitted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _changed(path, digest, "it no longer exists") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _changed(path, digest, "it was replaced by a symbolic link") from None
        raise _changed(path, digest, f"it cannot be opened ({exc.strerror})") from None
    try:
        real = Path(os.path.realpath(f"/proc/self/fd/{fd}"))
        if real != path or not any(real.is_relative_to(r) for r in roots):
            raise _changed(path, digest, "its directory now leads outside the source roots")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _changed(path, digest, "it is no longer a regular file")
        os.set_blocking(fd, True)
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "rb", closefd=True) as f, dest.open("wb") as out:
            fd = -1
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        found = f"sha256:{h.hexdigest()}"
        if found != digest:
            raise _changed(path, digest, f"its bytes now hash to {found}")
    except BaseException:
        if fd >= 0:
            os.close(fd)
        dest.unlink(missing_ok=True)
        raise
    return size


def _changed(path: Path, digest: str, why: str) -> SourceChanged:
    return SourceChanged(
        f"the source file {path} changed after the job was submitted: {why}; "
        "submit the edit again to run it on the current file",
        details={"path": str(path), "expected": digest},
    )
