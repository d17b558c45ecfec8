"""A resumable, verified download of a job's output into a local file.

Bytes go to `<path>.part`; a broken transfer is resumed with a Range request from the
part's size, and the file is renamed to `path` only when its SHA-256 equals the output's
digest, so `path` never holds a partial or wrong file.
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


@dataclass
class Download:
    path: Path
    part: Path
    digest: str | None
    offset: int

    @classmethod
    def start(cls, job: Job, path: Path) -> Download:
        part = path.with_name(path.name + ".part")
        offset = part.stat().st_size if part.is_file() else 0
        digest = (job.output or {}).get("digest")
        return cls(path, part, digest if isinstance(digest, str) else None, offset)

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
