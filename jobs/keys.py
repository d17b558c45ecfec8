"""Deterministic job keys and content digests of path sources.

key = "vj1_" + sha256(canonical JSON of {tenant, edit}). The canonical JSON has sorted keys,
no whitespace, ASCII only and no NaN, so it is the same on every machine and Python
version. The prefix names the derivation; a new derivation gets a new prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from jobs.errors import SourceNotFound

KEY_VERSION = "vj1"
_CHUNK = 1024 * 1024


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value that keys and request hashes are taken over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def job_key(tenant_id: str, edit: dict[str, Any]) -> str:
    """The job key of a canonical edit (see `jobs.canonical.canonical_edit`) for one tenant."""
    material = canonical_json({"v": KEY_VERSION, "tenant": tenant_id, "edit": edit})
    return f"{KEY_VERSION}_{hashlib.sha256(material).hexdigest()}"


def is_job_key(text: str) -> bool:
    prefix, _, digest = text.partition("_")
    return (
        prefix == KEY_VERSION and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    )


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, as 'sha256:<hex>'."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


class DigestCache:
    """Content digests of path sources, cached by (path, size, mtime_ns, ctime_ns, inode).

    A large source is read once; a changed file is re-read. The mtime alone is not enough: a
    same-size rewrite can put the old mtime back (`touch -d`, `os.utime`), but no one can set
    the ctime, which every write and every utime moves. The worker verifies the digest again
    before it reads the file anyway, so a stale entry could never produce a wrong output.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[tuple[str, int, int, int, int], str] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.misses = 0

    def cached(self, path: Path) -> str | None:
        """The digest if this exact file version was hashed before (a stat, no read)."""
        st = path.stat()
        ident = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with self._lock:
            return self._entries.get(ident)

    def digest(self, path: Path) -> str:
        st = path.stat()
        ident = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with self._lock:
            if ident in self._entries:
                self._entries.move_to_end(ident)
                return self._entries[ident]
        value = file_digest(path)
        with self._lock:
            self.misses += 1
            self._entries[ident] = value
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value


def resolve_source_path(raw: str, roots: list[Path], where: str) -> Path:
    """A client-given path, checked to be a regular file inside one of the source roots.

    Relative paths are taken against each root in turn. Symlinks are resolved before the
    check, so a link cannot lead outside a root.
    """
    if not roots:
        raise SourceNotFound(
            "path sources are disabled on this server: upload the file and use its digest",
            details=[{"path": where, "message": "no VIDJOBS_SOURCE_ROOTS configured"}],
        )
    candidates = [Path(raw)] if os.path.isabs(raw) else [root / raw for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if any(real.is_relative_to(root) for root in roots) and real.is_file():
            return real
    raise SourceNotFound(
        "source file not found inside the configured source roots",
        details=[
            {
                "path": where,
                "message": "no regular file with this path inside a source root",
                "allowed": "a path relative to, or inside, one of VIDJOBS_SOURCE_ROOTS",
            }
        ],
    )
