"""Where an edit's files come from: a path under a source root, an uploaded blob (by
digest) or an object in a granted bucket prefix. Checked here so that no client text reaches
a file path or a URL unchecked.
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from jobs.specbase import Strict

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Source(Strict):
    """A file to edit: a path inside a configured source root, an uploaded blob, or an
    object in a bucket prefix granted to the tenant."""

    path: str | None = Field(default=None, min_length=1, max_length=1024)
    digest: str | None = Field(default=None, description="sha256:<64 hex> of an uploaded blob")
    s3: str | None = Field(
        default=None, max_length=1100, description="s3://bucket/key in a prefix granted to you"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if sum(v is not None for v in (self.path, self.digest, self.s3)) != 1:
            raise ValueError("a source has exactly one of 'path', 'digest' or 's3'")
        if self.s3 is not None:
            parse_s3_url(self.s3)
        if self.digest is not None and not DIGEST_RE.match(self.digest):
            raise ValueError(
                "'digest' must look like 'sha256:' followed by 64 lowercase hex digits"
            )
        if self.path is not None:
            if CONTROL_RE.search(self.path) or not is_utf8(self.path):
                raise ValueError("'path' must not contain control characters or lone surrogates")
            if ".." in self.path.replace("\\", "/").split("/"):
                raise ValueError("'path' must not contain '..' segments")
        return self


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str, *, prefix: bool = False) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`. Keys are taken literally, so segments that a
    file-backed server could read as directories (empty, '.', '..') are refused."""
    if not url.startswith("s3://"):
        raise ValueError("'s3' must look like s3://bucket/key")
    bucket, _, key = url[5:].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError("the bucket name in 's3' must be 3-63 of a-z, 0-9, '.' and '-'")
    if CONTROL_RE.search(key) or not is_utf8(key) or len(key.encode()) > 1024:
        raise ValueError("the key in 's3' must be at most 1024 bytes with no control characters")
    segments = key.split("/")
    if prefix and segments and segments[-1] == "":
        segments = segments[:-1]
    if (not key and not prefix) or any(seg in ("", ".", "..") for seg in segments):
        raise ValueError("the key in 's3' must not be empty or have empty, '.' or '..' segments")
    return bucket, key
