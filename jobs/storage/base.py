"""The storage port: content-addressed objects with conditional writes.

Objects are named by the sha256 of their bytes (`sha256/<2 hex>/<64 hex>` under the store's
root or prefix), so a second writer of the same digest writes the same bytes: it is a
success, never an overwrite (`If-None-Match: *`). Reads verify the digest while they stream,
so a worker only ever holds bytes whose digest equals the one it asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobs.errors import PayloadTooLarge, SourceChanged

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"
# A dir of one process in the scratch dir: an attempt's, or its input cache's.
_OWNED = re.compile(r"^(?:job-\d+|inputs)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-")


def attempt_prefix(job_id: int | None) -> str:
    """The scratch dir name prefix of one attempt: the job, this host and this process, so
    a dead process's dirs can be told from a live one's (`Scratch.clean_orphans`)."""
    return f"job-{job_id}-{_HOST}-{os.getpid()}-"


def input_cache_prefix() -> str:
    """The scratch dir name prefix of this process's input cache (`workers.inputcache`)."""
    return f"inputs-{_HOST}-{os.getpid()}-"


def _live_owner(name: str) -> bool:
    """The dir belongs to a process on this host that is still running."""
    m = _OWNED.match(name)
    return m is not None and m["host"] == _HOST and _alive(int(m["pid"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
CHUNK = 1024 * 1024


def object_name(digest: str) -> str:
    """The relative name of a digest's object. Only well-formed digests have one."""
    m = DIGEST.match(digest)
    if m is None:
        raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
    hexd = m.group(1)
    return f"sha256/{hexd[:2]}/{hexd}"


def file_sha256(path: Path) -> tuple[str, int]:
    """(digest, size) of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return f"sha256:{h.hexdigest()}", size


def check_digest(expected: str, got: str, what: str) -> None:
    if got != expected:
        raise SourceChanged(
            f"{what}: its bytes hash to {got}, not to {expected} that the job names",
            details={"expected": expected, "found": got},
        )


@dataclass(frozen=True)
class ByteRange:
    """A served slice of an object: bytes [start, end] (inclusive) of `total`."""

    start: int
    end: int
    total: int
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class DirectUpload:
    """Where a client sends an upload's bytes: one presigned PUT, or one per part."""

    url: str | None
    parts: list[dict[str, object]]  # [{"part_number", "url", "offset", "size"}] (multipart)
    multipart_id: str | None
    headers: dict[str, str]


class Storage(Protocol):
    """What the API, the workers and the reaper need of storage (local dir or S3)."""

    description: str  # for logs: file:///... or s3://bucket/prefix
    # True when clients send direct uploads straight to storage (presigned URLs), so the
    # API's own PUT /v1/uploads/{id} is not for them.
    direct_uploads: bool

    async def ensure(self) -> None:
        """Make the store usable (its directory, or check/create the bucket)."""

    async def exists(self, digest: str) -> bool: ...

    async def put_file(self, path: Path, digest: str | None = None) -> tuple[str, int]:
        """Store a finished local file by its digest; the file is consumed (moved or
        removed). A given `digest` is verified, and a mismatch stores nothing. Another
        writer having stored the same digest first is a success. Returns (digest, size)."""
        ...

    async def fetch(self, digest: str, dest: Path) -> int:
        """Write a digest's bytes to `dest`, verified while they stream (SourceChanged on a
        mismatch, BlobMissing when absent; `dest` is removed on failure). Returns the size."""
        ...

    async def delete(self, digest: str) -> None: ...

    def local_path(self, digest: str) -> Path | None:
        """The stored file itself on a local store (served directly), else None."""
        ...

    async def presign_get(
        self, digest: str, *, expires: int, filename: str, media_type: str
    ) -> str | None:
        """A short-lived URL to download the object straight from storage (None: local)."""
        ...

    async def read_range(self, digest: str, start: int, end: int | None) -> ByteRange:
        """Stream bytes [start, end] of an object (end None: to its end)."""
        ...

    async def abort_stale_uploads(self, older_than_seconds: float) -> int:
        """Abort multipart uploads started before the cutoff (a crashed writer's parts)."""
        ...

    async def close(self) -> None: ...

    # Staged objects: direct uploads before they are verified and stored by digest.
    async def presign_upload(
        self, name: str, *, size: int, media_type: str, expires: int
    ) -> DirectUpload | None:
        """Presigned URL(s) to PUT a staged object's bytes to (None: local storage, where
        the bytes go through the API and `stage`)."""
        ...

    async def stage(self, name: str, path: Path) -> None:
        """Keep a local file as a staged object (consumed)."""
        ...

    async def fetch_staged(self, name: str, dest: Path, multipart_id: str | None) -> int:
        """Write a staged object to `dest` (completing its multipart upload first). BlobMissing
        when no bytes were sent. Returns the size."""
        ...

    async def delete_staged(self, name: str, multipart_id: str | None) -> None: ...

    # The process's local scratch space (attempt dirs, incoming uploads).
    def temp_dir(self, prefix: str) -> Path: ...

    def clean_temp(self, older_than_seconds: float) -> int: ...

    def clean_orphans(self) -> int: ...

    async def receive(
        self, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[str, int, Path]: ...


class Scratch:
    """A process's private local scratch directory: attempt dirs and incoming uploads."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.tmp = root
        # Local stores link received files into place: they must be on disk first. Scratch
        # that only feeds an upload elsewhere (S3) needs no fsync.
        self.durable = durable

    def ensure_scratch(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def temp_dir(self, prefix: str) -> Path:
        """A private directory for one attempt's scratch files."""
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))
        except FileNotFoundError:  # new (or its tmp was removed): create it
            self.ensure_scratch()
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))

    async def receive(
        self, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[str, int, Path]:
        """Stream an upload to a scratch file while hashing it; refuse it past `max_bytes`."""
        self.ensure_scratch()
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.tmp)
        tmp = Path(name)
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"upload is larger than the limit of {max_bytes} bytes",
                            details={"limit_bytes": max_bytes},
                        )
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink, not worth a thread
            raise
        return f"sha256:{h.hexdigest()}", size, tmp

    def clean_orphans(self) -> int:
        """Remove the dirs (attempts, input caches) of processes on this host that are gone
        (killed workers), at once rather than after `clean_temp`'s age. Returns how many."""
        if not self.tmp.is_dir():
            return 0
        removed = 0
        for entry in self.tmp.iterdir():
            m = _OWNED.match(entry.name)
            if m is None or m["host"] != _HOST or _alive(int(m["pid"])):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed

    def clean_temp(self, older_than_seconds: float) -> int:
        """Remove scratch files left by killed workers. Returns how many were removed. A
        dir of a live process on this host stays, however old (a long encode, a quiet
        input cache)."""
        if not self.tmp.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in self.tmp.iterdir():
            try:
                if entry.lstat().st_mtime >= cutoff or _live_owner(entry.name):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
            except FileNotFoundError:
                continue
        return removed
