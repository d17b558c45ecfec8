"""The security corpus at the API: injection strings everywhere, traversal, limits, 429s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from jobs.api import ApiState, create_app
from jobs.blobstore import BlobStore
from jobs.db import Database
from jobs.models import Job
from jobs.service import JobService
from jobs.settings import Settings
from jobs.tenants import create_tenant

INJECTIONS = [
    "'", ",", ";", "[", "]", "%{", "\\", "\n", "a'b", "x;rm -rf /", "[0:v]null[out]",
    "drawtext=text='%{pts}'", "$(id)", "`id`", "file:///etc/passwd", "concat:/etc/passwd|x",
    "../../etc/passwd", "/etc/passwd", "-i", "-f lavfi", "subfile,,start,0,end,0,,:/etc/passwd",
    "a\x00b", "\u202e", "x" * 5000,
]
BASE = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 1}]}


def place(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """`value` put in every string-ish field of an edit request."""
    return [
        ("source.path", {**BASE, "source": {"path": value}}),
        ("source.digest", {**BASE, "source": {"digest": value}}),
        ("op", {**BASE, "operations": [{"op": value}]}),
        ("trim.start", {**BASE, "operations": [{"op": "trim", "start": value}]}),
        ("thumbnail.at", {**BASE, "operations": [{"op": "thumbnail", "at": value}], "output": {"container": "jpg"}}),
        ("flip.direction", {**BASE, "operations": [{"op": "flip", "direction": value}]}),
        ("rotate.degrees", {**BASE, "operations": [{"op": "rotate", "degrees": value}]}),
        ("scale.width", {**BASE, "operations": [{"op": "scale", "width": value}]}),
        ("watermark.position", {**BASE, "operations": [{"op": "watermark", "source": {"path": "clip.mp4"}, "position": value}]}),
        ("watermark.source", {**BASE, "operations": [{"op": "watermark", "source": {"path": value}}]}),
        ("concat.source", {**BASE, "operations": [{"op": "concat", "sources": [{"path": value}]}]}),
        ("output.container", {**BASE, "output": {"container": value}}),
        ("output.video_codec", {**BASE, "output": {"video_codec": value}}),
        ("output.audio_codec", {**BASE, "output": {"audio_codec": value}}),
        ("label key", {**BASE, "labels": {value: "v"}}),
        ("extra field", {**BASE, "operations": [{"op": "scale", "width": 64, "filter": value}]}),
        ("deinterlace.filter", {**BASE, "operations": [{"op": "deinterlace", "filter": value}]}),
        ("pad.aspect", {**BASE, "operations": [{"op": "pad", "aspect": value}]}),
        ("pad.color", {**BASE, "operations": [{"op": "pad", "aspect": "16:9", "color": value}]}),
        ("fade.fade_in", {**BASE, "operations": [{"op": "fade", "fade_in": value}]}),
        ("loudnorm.target_lufs", {**BASE, "operations": [{"op": "loudnorm", "target_lufs": value}]}),
        ("output.preset", {**BASE, "output": {"preset": value}}),
        ("output.profile", {**BASE, "output": {"profile": value}}),
        ("output.level", {**BASE, "output": {"level": value}}),
        ("output.keyframe_interval", {**BASE, "output": {"keyframe_interval": value}}),
        ("output.audio_sample_rate", {**BASE, "output": {"audio_sample_rate": value}}),
        ("output.bit_depth", {**BASE, "output": {"bit_depth": value}}),
    ]


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_per_second": 0})


async def client_for(db: Database, settings: Settings) -> tuple[httpx.AsyncClient, str]:
    service = JobService(db, settings)
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=BlobStore(settings.data_dir / "blobs")))
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "sec")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers={"Authorization": f"Bearer {token}"})
    return client, token


@pytest.fixture
async def http(db: Database, strict_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    client, _ = await client_for(db, strict_settings)
    async with client:
        yield client


async def count_jobs(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(Job.__table__))).scalar_one())  # type: ignore[attr-defined]


async def test_injection_strings_in_every_field_are_refused_cleanly(http: httpx.AsyncClient, db: Database) -> None:
    checked = 0
    for value in INJECTIONS:
        for where, body in place(value):
            r = await http.post("/v1/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert r.status_code in (404, 422), (where, value, r.status_code, r.text[:300])
            err = r.json()["error"]
            assert err["code"] in ("invalid_request", "source_not_found") and err["message"], (where, value)
            assert "root:" not in r.text
            checked += 1
    assert checked == len(INJECTIONS) * 27
    assert await count_jobs(db) == 0, "no refused request may leave a row"


async def test_injection_strings_as_label_values_are_inert_data(http: httpx.AsyncClient) -> None:
    value = "'; DROP TABLE jobs; --[0:v]%{pts}\\"
    r = await http.post("/v1/jobs", json={**BASE, "labels": {"note": value}})
    assert r.status_code == 201
    job = (await http.get(f"/v1/jobs/{r.json()['key']}")).json()
    assert job["labels"] == {"note": value}
    assert value not in json.dumps(job["spec"]), "labels never reach the edit that ffmpeg runs"


@pytest.mark.parametrize(
    "path",
    ["../clip.mp4", "sub/../../clip.mp4", "/etc/passwd", "/proc/self/environ", "..", "clip.mp4/..", "~/.ssh/id_rsa"],
)
async def test_path_traversal_is_refused(http: httpx.AsyncClient, path: str) -> None:
    r = await http.post("/v1/jobs", json={**BASE, "source": {"path": path}})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["path"].startswith("source")


@pytest.mark.parametrize(
    "url",
    ["/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/vj1_'%3B--", "/v1/jobs?status=pending'%3B--", "/v1/jobs?cursor=' OR 1=1 --", "/v1/jobs/%00"],
)
async def test_injection_in_urls_is_harmless(http: httpx.AsyncClient, url: str) -> None:
    r = await http.get(url)
    assert r.status_code in (404, 422), r.text


async def test_idempotency_key_header_is_checked(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/jobs", json=BASE, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 422
    r = await http.post("/v1/jobs", json=BASE, headers={"Idempotency-Key": "ok\u00e9".encode()})
    assert r.status_code == 422


async def test_rate_limit_answers_429_with_retry_after(db: Database, settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 2, "rate_limit_burst": 5})
    client, _ = await client_for(db, limited)
    async with client:
        codes = [(await client.get("/v1/jobs")).status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:], codes
        r = await client.get("/v1/jobs")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"


async def test_cap_on_jobs_in_flight_answers_429(db: Database, strict_settings: Settings) -> None:
    capped = strict_settings.model_copy(update={"max_in_flight_per_tenant": 2})
    client, _ = await client_for(db, capped)
    async with client:
        bodies = [{**BASE, "operations": [{"op": "trim", "start": i, "end": i + 1}]} for i in range(3)]
        assert (await client.post("/v1/jobs", json=bodies[0])).status_code == 201
        assert (await client.post("/v1/jobs", json=bodies[1])).status_code == 201
        third = await client.post("/v1/jobs", json=bodies[2])
        assert third.status_code == 429 and third.headers["Retry-After"] == "5"
        assert third.json()["error"]["code"] == "too_many_in_flight"
        dup = await client.post("/v1/jobs", json=bodies[0])
        assert dup.status_code == 200, "answering a duplicate is never capped"
        key = (await client.post("/v1/jobs", json=bodies[0])).json()["key"]
        await client.post(f"/v1/jobs/{key}/cancel")
        assert (await client.post("/v1/jobs", json=bodies[2])).status_code == 201
