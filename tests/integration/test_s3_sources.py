"""S3 sources on a real S3 server: grants, pinned versions, identical refusals."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobs import grants
from jobs.db import Database
from jobs.errors import SourceNotFound
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef
from tests.integration.test_pinned_sources import ReadingExecutor
from tests.integration.test_runner import make_runner, running, wait_for
from tests.support.s3 import drop_bucket, new_bucket_storage, s3_config, s3_env

pytestmark = pytest.mark.s3
CLIP = b"an S3 mezzanine " * 4000


@pytest.fixture
async def bucket(settings: Settings) -> AsyncIterator[Any]:
    """A bucket with media/ (to be granted), media-other/ and secret/ objects."""
    store = await new_bucket_storage(settings.data_dir / "tmp", prefix="")
    c = await store.client()
    checksum = base64.b64encode(hashlib.sha256(CLIP).digest()).decode()
    await c.put_object(Bucket=store.bucket, Key="media/clip.mp4", Body=CLIP, ChecksumSHA256=checksum)
    await c.put_object(Bucket=store.bucket, Key="media/plain.mp4", Body=CLIP + b"2")  # no checksum
    await c.put_object(Bucket=store.bucket, Key="media-other/clip.mp4", Body=CLIP)
    await c.put_object(Bucket=store.bucket, Key="secret/clip.mp4", Body=CLIP)
    yield store
    await drop_bucket(store)


@pytest.fixture
def s3_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What a deployment sets: the endpoint, and the standard AWS variables (the worker's
    reader is made from them)."""
    for var, value in s3_env().items():
        monkeypatch.setenv(var, value)
    return settings.model_copy(update={"s3_endpoint_url": s3_config()["endpoint_url"]})


@pytest.fixture
async def s3_service(db: Database, s3_settings: Settings) -> AsyncIterator[JobService]:
    service = JobService(db, s3_settings)
    yield service
    await service.close()


def edit(url: str, i: int = 0) -> EditRequest:
    return EditRequest.model_validate(
        {"source": {"s3": url}, "operations": [{"op": "trim", "start": i, "end": i + 1}]}
    )


async def refusal(service: JobService, tenant: TenantRef, url: str) -> tuple[str, str, Any]:
    with pytest.raises(SourceNotFound) as caught:
        await service.submit(tenant, edit(url))
    return caught.value.code, caught.value.message, caught.value.details


async def test_a_granted_object_keys_on_its_content_and_runs_on_the_pinned_version(
    db: Database, s3_service: JobService, tenant: TenantRef, s3_settings: Settings, bucket: Any,
) -> None:
    async with db.transaction() as conn:
        await grants.grant_source(conn, tenant.id, f"s3://{bucket.bucket}/media")
    url = f"s3://{bucket.bucket}/media/clip.mp4"
    job = (await s3_service.submit(tenant, edit(url))).job
    [pinned] = job.spec["inputs"]
    assert pinned["digest"] == f"sha256:{hashlib.sha256(CLIP).hexdigest()}"
    assert pinned["s3"]["key"] == "media/clip.mp4" and pinned["s3"]["etag"]
    assert s3_service.s3_sources.hashed == 0  # the object's SHA-256 checksum was used
    plain = (await s3_service.submit(tenant, edit(f"s3://{bucket.bucket}/media/plain.mp4"))).job
    assert plain.spec["inputs"][0]["digest"] == f"sha256:{hashlib.sha256(CLIP + b'2').hexdigest()}"
    assert s3_service.s3_sources.hashed == 1  # no checksum: hashed once ...
    await s3_service.submit(tenant, edit(f"s3://{bucket.bucket}/media/plain.mp4", 1))
    assert s3_service.s3_sources.hashed == 1  # ... and cached by bucket, key, ETag, size
    executor = ReadingExecutor()
    runner, _ = make_runner(db, s3_settings, LocalStorage(s3_settings.data_dir / "blobs"), executor)
    async with running(runner):
        done = await wait_for(s3_service, tenant, job.key, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error_message
    assert executor.seen[job.key] == [CLIP]


async def test_an_object_overwritten_after_submission_fails_source_changed_and_rekeys(
    db: Database, s3_service: JobService, tenant: TenantRef, s3_settings: Settings, bucket: Any,
) -> None:
    async with db.transaction() as conn:
        await grants.grant_source(conn, tenant.id, f"s3://{bucket.bucket}/media/")
    url = f"s3://{bucket.bucket}/media/clip.mp4"
    first = (await s3_service.submit(tenant, edit(url))).job
    c = await bucket.client()
    await c.put_object(Bucket=bucket.bucket, Key="media/clip.mp4", Body=b"new bytes" * 1000)
    executor = ReadingExecutor()
    runner, _ = make_runner(db, s3_settings, LocalStorage(s3_settings.data_dir / "blobs"), executor)
    async with running(runner):
        failed = await wait_for(s3_service, tenant, first.key, {"succeeded", "failed"})
    assert (failed.status, failed.error_code) == ("failed", "source_changed")
    assert "overwritten" in (failed.error_message or "")
    assert executor.seen == {}
    again = (await s3_service.submit(tenant, edit(url))).job
    assert again.key != first.key  # the new content has a new key


async def test_ungranted_prefixes_are_refused_exactly_like_missing_objects(
    db: Database, s3_service: JobService, tenant: TenantRef, other_tenant: TenantRef, bucket: Any,
) -> None:
    b = bucket.bucket
    async with db.transaction() as conn:
        await grants.grant_source(conn, tenant.id, f"s3://{b}/media/")
    missing = await refusal(s3_service, tenant, f"s3://{b}/media/nothing.mp4")
    assert missing[0] == "source_not_found"
    for url in (
        f"s3://{b}/secret/clip.mp4",  # exists, not granted
        f"s3://{b}/media-other/clip.mp4",  # a prefix of the grant's name, not under it
        f"s3://no-such-bucket-{b[-6:]}/media/clip.mp4",
    ):
        assert await refusal(s3_service, tenant, url) == missing, url
    # Another tenant has no grant at all: the granted object is missing to it.
    assert await refusal(s3_service, other_tenant, f"s3://{b}/media/clip.mp4") == missing
    async with db.transaction() as conn:
        assert await grants.revoke_source(conn, tenant.id, f"s3://{b}/media")
    assert await refusal(s3_service, tenant, f"s3://{b}/media/clip.mp4") == missing


@pytest.mark.parametrize(
    "url",
    ["s3://b", "s3://Bad_Bucket/x", "s3://bucket/a/../secret", "s3://bucket//x", "s3://bucket/./x",
     "https://bucket/x", "s3://bucket/a\x00b"],
)
def test_malformed_s3_urls_are_invalid_requests(url: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        edit(url)
