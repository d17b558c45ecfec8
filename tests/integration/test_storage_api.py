"""Uploads, tenant-owned digests and downloads through the API, on both stores.

Local storage streams outputs through the API; S3 storage answers 307 to a presigned URL
that the real server (versitygw) serves, or streams with Range when `redirect=false`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage, Storage
from jobs.tenants import create_tenant
from tests.integration.test_pinned_sources import ReadingExecutor
from tests.integration.test_runner import make_runner, running, wait_for


@pytest.fixture
async def stack(
    db: Database, service: JobService, settings: Settings, store: Storage
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, str]]]:
    async with db.transaction() as conn:
        a, ta = await create_tenant(conn, "acme")
        _, tb = await create_tenant(conn, "globex")
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client, {"acme": f"Bearer {ta}", "globex": f"Bearer {tb}"}, {"acme": a.id}


def edit(digest: str) -> dict[str, object]:
    return {"source": {"digest": digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]}


async def test_an_upload_belongs_to_its_uploader_and_others_get_the_unknown_answer(
    stack: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]], store: Storage
) -> None:
    http, auth, _ = stack
    data = os.urandom(50_000)
    up = await http.post("/v1/sources", content=data, headers={"Authorization": auth["acme"]})
    assert up.status_code == 201, up.text
    digest = up.json()["digest"]
    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert await store.exists(digest)
    mine = await http.post("/v1/jobs", json=edit(digest), headers={"Authorization": auth["acme"]})
    assert mine.status_code == 201, mine.text
    theirs = await http.post("/v1/jobs", json=edit(digest), headers={"Authorization": auth["globex"]})
    unknown = await http.post(
        "/v1/jobs", json=edit("sha256:" + "1" * 64), headers={"Authorization": auth["globex"]}
    )
    assert theirs.status_code == unknown.status_code == 422
    assert theirs.json() == unknown.json()
    # Uploading the same bytes makes the second tenant an owner too (one stored copy).
    again = await http.post("/v1/sources", content=data, headers={"Authorization": auth["globex"]})
    assert again.status_code == 201 and again.json()["digest"] == digest
    ok = await http.post("/v1/jobs", json=edit(digest), headers={"Authorization": auth["globex"]})
    assert ok.status_code == 201, ok.text


async def test_download_of_an_output(
    stack: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]],
    store: Storage, db: Database, service: JobService, settings: Settings,
) -> None:
    http, auth, ids = stack
    data = os.urandom(300_000)
    up = await http.post("/v1/sources", content=data, headers={"Authorization": auth["acme"]})
    sub = await http.post("/v1/jobs", json=edit(up.json()["digest"]), headers={"Authorization": auth["acme"]})
    key = sub.json()["key"]
    runner, _ = make_runner(db, settings, store, ReadingExecutor())  # type: ignore[arg-type]
    from jobs.tenants import TenantRef

    async with running(runner):
        done = await wait_for(service, TenantRef(id=ids["acme"], name="acme"), key, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error_message
    url = f"/v1/jobs/{key}/output"
    h = {"Authorization": auth["acme"]}
    assert (await http.get(url, headers={"Authorization": auth["globex"]})).status_code == 404
    ranged = await http.get(url, params={"redirect": "false"}, headers={**h, "Range": "bytes=100-199"})
    assert ranged.status_code == 206
    assert ranged.content == data[100:200]
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(data)}"
    whole = await http.get(url, params={"redirect": "false"}, headers=h)
    assert whole.status_code == 200 and whole.content == data
    past = await http.get(url, params={"redirect": "false"}, headers={**h, "Range": "bytes=999999-"})
    assert past.status_code == 416
    assert past.json()["error"]["code"] == "range_not_satisfiable"
    plain = await http.get(url, headers=h)
    if isinstance(store, LocalStorage):
        assert plain.status_code == 200 and plain.content == data
        return
    assert plain.status_code == 307
    location = plain.headers["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    async with httpx.AsyncClient() as direct:  # straight from the S3 server
        got = await direct.get(location)
        assert got.status_code == 200 and got.content == data
        forged = await direct.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=a"))
        assert forged.status_code == 403
    await store.delete(done.output["digest"])
    gone = await http.get(url, headers=h)
    assert gone.status_code == 404


async def test_uploads_and_their_parts_land_in_storage_only(
    stack: tuple[httpx.AsyncClient, dict[str, str], dict[str, str]], store: Storage, settings: Settings,
) -> None:
    """Nothing of an upload stays in the API's scratch dir once it is stored."""
    http, auth, _ = stack
    up = await http.post("/v1/sources", content=b"x" * 10_000, headers={"Authorization": auth["acme"]})
    assert up.status_code == 201
    scratch: Path = store.tmp  # type: ignore[attr-defined]
    assert [p for p in scratch.rglob("*") if p.is_file()] == []
