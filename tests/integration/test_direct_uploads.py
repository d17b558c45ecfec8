"""Direct uploads (POST /v1/uploads + complete) on local storage and on a real S3 server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage, Storage
from jobs.tenants import create_tenant
from tests.support.s3 import store_of_kind

MiB = 1024 * 1024


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Storage]:
    """Small multipart settings, so a few MiB already go up in parts."""
    blobs, scratch = settings.data_dir / "blobs", settings.data_dir / "tmp"
    async with store_of_kind(
        request.param, blobs, scratch, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as s:
        yield s


@pytest.fixture
async def api(
    db: Database, service: JobService, settings: Settings, store: Storage
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    async with db.transaction() as conn:
        _, ta = await create_tenant(conn, "acme")
        _, tb = await create_tenant(conn, "globex")
    settings = settings.model_copy(update={"upload_max_bytes": 64 * MiB})
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c, {"acme": {"Authorization": f"Bearer {ta}"}, "globex": {"Authorization": f"Bearer {tb}"}}


async def send(http: httpx.AsyncClient, auth: dict[str, str], upload: dict[str, Any], data: bytes) -> None:
    """What a client does with the answer: PUT the bytes (or each part) where it says."""
    async with httpx.AsyncClient() as direct:
        if upload["parts"]:
            for part in upload["parts"]:
                chunk = data[part["offset"]: part["offset"] + part["size"]]
                r = await direct.put(part["url"], content=chunk, headers=upload["headers"])
                assert r.status_code == 200, r.text
            return
        if upload["url"].startswith("http://test/"):  # local storage: the API itself
            r = await http.put(upload["url"], content=data, headers={**upload["headers"], **auth})
        else:
            r = await direct.put(upload["url"], content=data, headers=upload["headers"])
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("size", [300_000, 11 * MiB + 3], ids=["single", "multipart"])
async def test_a_direct_upload_round_trips_and_becomes_a_usable_source(
    api: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], store: Storage, size: int
) -> None:
    http, auth = api
    data = os.urandom(size)
    made = await http.post("/v1/uploads", json={"size": size, "media_type": "video/mp4"}, headers=auth["acme"])
    assert made.status_code == 201, made.text
    upload = made.json()
    assert set(upload) >= {"upload_id", "url", "method", "headers", "expires_at", "parts"}
    assert upload["method"] == "PUT"
    if isinstance(store, LocalStorage) or size < 5 * MiB:
        assert upload["url"] and not upload["parts"]
    else:
        assert upload["url"] is None and len(upload["parts"]) == 3
    early = await http.post(f"/v1/uploads/{upload['upload_id']}/complete", headers=auth["acme"])
    assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
    await send(http, auth["acme"], upload, data)
    # Another tenant cannot complete (or even see) it.
    theirs = await http.post(f"/v1/uploads/{upload['upload_id']}/complete", headers=auth["globex"])
    assert theirs.status_code == 404
    done = await http.post(f"/v1/uploads/{upload['upload_id']}/complete", headers=auth["acme"])
    assert done.status_code == 200, done.text
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert done.json()["digest"] == digest and done.json()["size"] == size
    again = await http.post(f"/v1/uploads/{upload['upload_id']}/complete", headers=auth["acme"])
    assert again.status_code == 200 and again.json()["digest"] == digest
    assert await store.exists(digest)
    edit = {"source": {"digest": digest}, "operations": [{"op": "trim", "start": 0, "end": 1}]}
    assert (await http.post("/v1/jobs", json=edit, headers=auth["acme"])).status_code == 201
    assert (await http.post("/v1/jobs", json=edit, headers=auth["globex"])).status_code == 422


async def test_direct_upload_refusals(
    api: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], store: Storage
) -> None:
    http, auth = api
    big = await http.post("/v1/uploads", json={"size": 65 * MiB}, headers=auth["acme"])
    assert big.status_code == 413 and big.json()["error"]["details"]["limit_bytes"] == 64 * MiB
    for bad in ({"size": 0}, {"size": 10, "media_type": "../../x"}, {"size": 10, "extra": 1}):
        r = await http.post("/v1/uploads", json=bad, headers=auth["acme"])
        assert r.status_code == 422, bad
    assert (await http.post("/v1/uploads/nothex/complete", headers=auth["acme"])).status_code == 404
    assert (await http.post(f"/v1/uploads/{'a' * 32}/complete", headers=auth["acme"])).status_code == 404
    made = (await http.post("/v1/uploads", json={"size": 1000}, headers=auth["acme"])).json()
    through = await http.put(f"/v1/uploads/{made['upload_id']}", content=b"x" * 1000, headers=auth["acme"])
    if store.direct_uploads:  # S3: the bytes go to the presigned URL, not through the API
        assert through.status_code == 422 and "straight to storage" in through.json()["error"]["message"]
    else:
        assert through.status_code == 200
        made = (await http.post("/v1/uploads", json={"size": 1000}, headers=auth["acme"])).json()
    await send(http, auth["acme"], made, b"x" * 999)  # one byte short
    short = await http.post(f"/v1/uploads/{made['upload_id']}/complete", headers=auth["acme"])
    assert short.status_code == 422 and "999 bytes" in short.json()["error"]["message"]


class CountingTransport(httpx.AsyncBaseTransport):
    """The API's transport, counting the requests that reach the API."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[tuple[str, str, bool]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append((request.method, request.url.path, "authorization" in request.headers))
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("size", [300_000, 11 * MiB + 3], ids=["single", "multipart"])
async def test_the_client_uploads_straight_to_storage(
    db: Database, service: JobService, settings: Settings, store: Storage, size: int,
    tmp_path: Path,
) -> None:
    import vidjobs

    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "acme")
    settings = settings.model_copy(update={"upload_max_bytes": 64 * MiB})
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    api = CountingTransport(httpx.ASGITransport(app=app))
    data = os.urandom(size)
    (tmp_path / "clip.bin").write_bytes(data)
    async with vidjobs.AsyncClient("http://test", token, transport=api) as vj:
        src = await vj.upload(tmp_path / "clip.bin", media_type="video/mp4")
    assert src.digest == f"sha256:{hashlib.sha256(data).hexdigest()}" and src.size == size
    assert await store.exists(src.digest)
    puts = [p for p in api.paths if p[0] == "PUT"]
    if isinstance(store, LocalStorage):
        assert len(puts) == 1 and puts[0][2]  # through the API, with the token
    else:
        assert puts == []  # the bytes went to S3 only, and the token never left for it
    assert ("POST", "/v1/uploads", True) in api.paths
    method, path, _ = api.paths[-1]
    assert method == "POST" and path.startswith("/v1/uploads/") and path.endswith("/complete")
