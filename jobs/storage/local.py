"""The local directory store: the embedded default (`<data dir>/blobs`).

A file enters the store only complete and verified: it is hard-linked into place under its
digest's name (an atomic create-if-absent, the file system's `If-None-Match: *`), read-only.
Stored files are never modified, so nothing is ever seen half-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from jobs.errors import BlobMissing, RangeNotSatisfiable
from jobs.storage.base import (
    CHUNK,
    ByteRange,
    DirectUpload,
    Scratch,
    check_digest,
    file_sha256,
    object_name,
)


class LocalStorage(Scratch):
    direct_uploads = False

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        super().__init__(self.root / "tmp")
        self.description = self.root.as_uri()

    async def ensure(self) -> None:
        self.ensure_scratch()

    def path_for(self, digest: str) -> Path:
        """Where a digest's bytes live. Only well-formed digests map to a path."""
        return self.root / object_name(digest)

    def local_path(self, digest: str) -> Path | None:
        return self.path_for(digest)

    async def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    async def put_file(self, path: Path, digest: str | None = None) -> tuple[str, int]:
        return await asyncio.to_thread(self._put_file, path, digest)

    def _put_file(self, path: Path, expected: str | None) -> tuple[str, int]:
        try:
            with path.open("rb") as f:
                os.fsync(f.fileno())
            digest, size = file_sha256(path)
            if expected is not None:
                check_digest(expected, digest, f"the file {path.name} being stored")
            final = self.path_for(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o444)
            try:
                os.link(path, final)  # fails if present: the first writer's bytes stay
            except FileExistsError:
                return digest, size
            except OSError:  # another file system (or no hard links): copy, then rename
                self._copy_into(path, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return digest, size
        finally:
            path.unlink(missing_ok=True)

    def _copy_into(self, path: Path, final: Path) -> None:
        self.ensure_scratch()
        tmp = self.temp_dir("put-") / "object"
        try:
            with path.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, final)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
            tmp.parent.rmdir()

    async def fetch(self, digest: str, dest: Path) -> int:
        return await asyncio.to_thread(self._fetch, digest, dest)

    def _fetch(self, digest: str, dest: Path) -> int:
        src = self.path_for(digest)
        h = hashlib.sha256()
        size = 0
        try:
            # A link when the scratch dir shares the store's file system: the stored file is
            # immutable, and it is hashed all the same (a read the page cache serves to ffmpeg).
            try:
                os.link(src, dest)
                f = dest.open("rb")
            except FileNotFoundError:
                raise BlobMissing(f"{digest} is missing from storage") from None
            except OSError:
                f = None
            if f is not None:
                with f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
            else:
                try:
                    src_f = src.open("rb")
                except FileNotFoundError:
                    raise BlobMissing(f"{digest} is missing from storage") from None
                with src_f, dest.open("wb") as out:
                    while chunk := src_f.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            check_digest(digest, f"sha256:{h.hexdigest()}", f"stored object {digest}")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return size

    async def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    async def presign_get(
        self, digest: str, *, expires: int, filename: str, media_type: str
    ) -> str | None:
        return None

    async def read_range(self, digest: str, start: int, end: int | None) -> ByteRange:
        path = self.path_for(digest)
        try:
            total = path.stat().st_size
        except FileNotFoundError:
            raise BlobMissing(f"{digest} is missing from storage") from None
        if start < 0:  # a suffix: the last -start bytes
            start = max(0, total + start)
        elif start >= total and not (start == 0 and end is None):
            raise RangeNotSatisfiable(
                f"the range starts at byte {start}; the file has {total} bytes",
                details={"size": total},
            )
        last = total - 1 if end is None else min(end, total - 1)

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                f.seek(start)
                left = last - start + 1
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk

        return ByteRange(start, last, total, chunks())

    async def abort_stale_uploads(self, older_than_seconds: float) -> int:
        return 0  # no multipart uploads: partial files live in the scratch dir

    async def close(self) -> None:
        return None

    def _staged(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a staged object name: {name[:80]!r}")
        return self.root / "uploads" / name

    async def presign_upload(
        self, name: str, *, size: int, media_type: str, expires: int
    ) -> DirectUpload | None:
        return None

    async def stage(self, name: str, path: Path) -> None:
        final = self._staged(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)

    async def fetch_staged(self, name: str, dest: Path, multipart_id: str | None) -> int:
        src = self._staged(name)
        try:
            os.link(src, dest)
        except FileNotFoundError:
            raise BlobMissing("no bytes were sent for this upload") from None
        except OSError:
            await asyncio.to_thread(shutil.copyfile, src, dest)
        return os.stat(dest).st_size

    async def delete_staged(self, name: str, multipart_id: str | None) -> None:
        self._staged(name).unlink(missing_ok=True)
