"""A real S3-compatible server for tests (versitygw; it checks SigV4 signatures).

The test command starts a private versitygw on a posix directory and exports
VIDJOBS_TEST_S3_ENDPOINT with its root keys. Each test makes its own bucket, so tests never
see each other's objects, even on a shared server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jobs.storage import LocalStorage, Storage
from jobs.storage.s3 import S3Storage
from tests.support.databases import require_service

S3_ENV = "VIDJOBS_TEST_S3_ENDPOINT"


def s3_config() -> dict[str, str]:
    endpoint = os.environ.get(S3_ENV)
    if not endpoint:
        require_service(
            "S3 (versitygw)",
            f"set {S3_ENV} (make test starts a private versitygw, built once with go install)",
        )
    assert endpoint is not None
    return {
        "endpoint_url": endpoint,
        "access_key": os.environ.get("VIDJOBS_TEST_S3_ACCESS_KEY", ""),
        "secret_key": os.environ.get("VIDJOBS_TEST_S3_SECRET_KEY", ""),
    }


def s3_env() -> dict[str, str]:
    """The environment a vidjobs process needs to reach the test server."""
    conf = s3_config()
    return {
        "VIDJOBS_S3_ENDPOINT_URL": conf["endpoint_url"],
        "AWS_ACCESS_KEY_ID": conf["access_key"],
        "AWS_SECRET_ACCESS_KEY": conf["secret_key"],
        "AWS_REGION": "us-east-1",
    }


def unique_bucket() -> str:
    return f"vjt-{uuid.uuid4().hex[:16]}"


async def new_bucket_storage(scratch: Path, prefix: str = "blobs", **kw: Any) -> S3Storage:
    """An S3Storage on a fresh bucket of its own."""
    conf: dict[str, Any] = {**s3_config(), **kw}
    store = S3Storage(f"s3://{unique_bucket()}/{prefix}", scratch, **conf)
    await store.create_bucket()
    return store


async def drop_bucket(store: S3Storage) -> None:
    """Delete every object and upload of the test's bucket, then the bucket."""
    with contextlib.suppress(Exception):
        c = await store.client()
        await store.abort_stale_uploads(-3600)
        while True:
            page = await c.list_objects_v2(Bucket=store.bucket)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await c.delete_objects(Bucket=store.bucket, Delete={"Objects": keys})
            if not page.get("IsTruncated"):
                break
        await c.delete_bucket(Bucket=store.bucket)
    await store.close()


@contextlib.asynccontextmanager
async def store_of_kind(
    kind: str, blobs: Path, scratch: Path, **s3_options: Any
) -> AsyncIterator[Storage]:
    """The store a test parametrized on `["local", "s3"]` runs on: a LocalStorage at `blobs`,
    or an S3Storage on a fresh bucket of its own (scratch at `scratch`), dropped after."""
    if kind == "local":
        yield LocalStorage(blobs)
        return
    s3 = await new_bucket_storage(scratch, **s3_options)
    try:
        yield s3
    finally:
        await drop_bucket(s3)
