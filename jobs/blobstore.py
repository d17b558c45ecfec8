"""Content-addressed file storage under the data dir.

A file enters the store only complete: it is written (or copied) to a private temp path,
fsynced, hashed and renamed into place atomically. Stored files are never modified, so a
job's output can never be seen half-written.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from jobs.errors import PayloadTooLarge

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / "tmp"

    def ensure(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        """Where a digest's bytes live. Only well-formed digests map to a path."""
        m = _DIGEST.match(digest)
        if m is None:
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        hexd = m.group(1)
        return self.root / "sha256" / hexd[:2] / hexd

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def temp_dir(self, prefix: str) -> Path:
        """A private directory for one attempt's scratch files."""
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))
        except FileNotFoundError:  # the store is new (or its tmp was removed): create it
            self.ensure()
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))

    def put_file(self, path: Path) -> tuple[str, int]:
        """Move a finished file into the store (fsynced first). Returns (digest, size)."""
        h = hashlib.sha256()
        size = 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        digest = f"sha256:{h.hexdigest()}"
        self._install(path, digest)
        return digest, size

    def _install(self, path: Path, digest: str) -> None:
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            path.unlink(missing_ok=True)
            return
        os.chmod(path, 0o444)
        os.replace(path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def put_stream(
        self, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> tuple[str, int, Path]:
        """Stream an upload to a temp file while hashing it; refuse it past `max_bytes`."""
        self.ensure()
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
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink, not worth a thread
            raise
        return f"sha256:{h.hexdigest()}", size, tmp

    def install_temp(self, tmp: Path, digest: str) -> Path:
        """Install a temp file whose digest is already known (see `put_stream`)."""
        self._install(tmp, digest)
        return self.path_for(digest)

    def clean_temp(self, older_than_seconds: float) -> int:
        """Remove scratch files left by killed workers. Returns how many were removed."""
        import shutil
        import time

        if not self.tmp.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in self.tmp.iterdir():
            try:
                if entry.lstat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
            except FileNotFoundError:
                continue
        return removed
