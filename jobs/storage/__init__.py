"""Storage: a port with a local-directory and an S3-compatible implementation.

`open_storage(settings)` picks one from `VIDJOBS_STORAGE_URL`: `file:///abs/path` (default
`<data dir>/blobs`) or `s3://bucket/prefix` (endpoint from `VIDJOBS_S3_ENDPOINT_URL` or
`AWS_ENDPOINT_URL`; credentials and region from the standard AWS variables).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from jobs.settings import Settings
from jobs.storage.base import ByteRange, Storage, file_sha256, object_name
from jobs.storage.local import LocalStorage

if TYPE_CHECKING:
    from jobs.storage.s3_sources import S3Sources

__all__ = [
    "ByteRange",
    "LocalStorage",
    "Storage",
    "file_sha256",
    "object_name",
    "open_s3_sources",
    "open_storage",
]


def open_s3_sources(settings: Settings) -> S3Sources:
    """The reader of `{"s3": ...}` sources: the storage endpoint and the AWS credentials."""
    from jobs.storage.s3_sources import S3Sources

    return S3Sources(settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)


def open_storage(settings: Settings) -> Storage:
    """The configured store (not yet connected: the S3 client is made on first use)."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.data_dir / "blobs")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"VIDJOBS_STORAGE_URL must be file:///absolute/path, got {url!r}")
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from jobs.storage.s3 import S3Storage

        return S3Storage(
            url,
            settings.data_dir / "tmp",
            endpoint_url=settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            multipart_threshold=settings.s3_multipart_threshold_bytes,
            part_size=settings.s3_part_size_bytes,
        )
    raise ValueError(
        f"VIDJOBS_STORAGE_URL must be file:///absolute/path or s3://bucket/prefix, got {url!r}"
    )
