"""A resumable, verified download of a job's output (or one file of it) into a local file.

Bytes go to `<path>.part`; a broken transfer is resumed with a Range request from the
part's size, and the file is renamed to `path` only when its SHA-256 equals the digest the
job names for it, so `path` never holds a partial or wrong file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from vidjobs import errors
from vidjobs.models import Job

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")
# A package file's name as the server makes them: one path segment, never "..".
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _digest(entry: object) -> str | None:
    digest = entry.get("digest") if isinstance(entry, dict) else None
    return digest if isinstance(digest, str) else None


def output_digest(job: Job, name: str | None) -> str | None:
    """The digest a download of the job's output (`name` None) or of its named output must
    match. A name the job does not have is an error naming the ones it has."""
    if name is None:
        return _digest(job.output)
    outputs = (job.output or {}).get("outputs")
    if not isinstance(outputs, dict) or name not in outputs:
        have = sorted(outputs) if isinstance(outputs, dict) else []
        raise errors.NotFound(
            f"job {job.key} has no output named {name!r} (it has {have or 'none'})",
            code="not_found", details={"outputs": have},
        )
    return _digest(outputs[name])


def package_files(job: Job) -> list[tuple[str, str]]:
    """(file name, digest) of every file of the job's package, manifests included."""
    package = (job.output or {}).get("package")
    files = package.get("files") if isinstance(package, dict) else None
    if not isinstance(files, dict):
        raise errors.NotFound(
            f"job {job.key} has no package (it is {job.status})", code="not_found"
        )
    out = []
    for name, entry in sorted(files.items()):
        digest = _digest(entry)
        if not _FILE_NAME.match(name) or digest is None:
            raise errors.VidjobsError(
                f"the package of job {job.key} names a file {name[:130]!r} that is not a plain "
                "file name with a digest; nothing was written", code="bad_package",
            )
        out.append((name, digest))
    return out


@dataclass
class Download:
    path: Path
    part: Path
    digest: str | None
    offset: int

    @classmethod
    def start(cls, digest: str | None, path: Path) -> Download:
        part = path.with_name(path.name + ".part")
        offset = part.stat().st_size if part.is_file() else 0
        return cls(path, part, digest, offset)

    def request_headers(self) -> dict[str, str]:
        return {"Range": f"bytes={self.offset}-"} if self.offset else {}

    @contextlib.contextmanager
    def open(self, status: int, headers: httpx.Headers) -> Iterator[IO[bytes]]:
        """The part file to write this response's body to: appended to for a 206 that
        starts where the part ends, rewritten from the start for a 200."""
        if status == 206:
            m = _CONTENT_RANGE.match(headers.get("content-range", ""))
            if m is None or int(m.group(1)) != self.offset:
                raise errors.VidjobsError(
                    f"the server resumed at {headers.get('content-range')!r}, not at byte "
                    f"{self.offset}", status=status, code="bad_range",
                )
            mode = "ab"
        else:
            self.offset = 0
            mode = "wb"
        with self.part.open(mode) as f:
            try:
                yield f
            finally:
                f.flush()
                self.offset = f.tell()

    def finish(self) -> Path:
        if self.digest is not None:
            h = hashlib.sha256()
            with self.part.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    h.update(chunk)
            got = f"sha256:{h.hexdigest()}"
            if got != self.digest:
                self.part.unlink(missing_ok=True)
                raise errors.VidjobsError(
                    f"downloaded bytes hash to {got}, not the output's {self.digest}; the "
                    "partial file was removed, download again", code="digest_mismatch",
                )
        os.replace(self.part, self.path)
        return self.path
