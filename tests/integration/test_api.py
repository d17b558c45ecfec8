"""The HTTP API against SQLite and a real PostgreSQL: status codes, isolation, no 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant

EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 1, "end": 2}]}


@pytest.fixture
def app(db: Database, service: JobService, settings: Settings) -> FastAPI:
    return create_app(
        ApiState(
            db=db, service=service, settings=settings, blobs=LocalStorage(settings.data_dir / "blobs")
        )
    )


@pytest.fixture
async def tokens(db: Database) -> dict[str, str]:
    async with db.transaction() as conn:
        _, a = await create_tenant(conn, "acme")
        _, b = await create_tenant(conn, "globex")
    return {"acme": a, "globex": b}


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_submit_then_duplicate_then_reject(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    first = await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))
    assert first.status_code == 201, first.text
    assert first.headers["Idempotent-Replayed"] == "false"
    key = first.json()["key"]
    assert first.headers["Location"] == f"/v1/jobs/{key}"
    reordered = json.dumps(
        {"operations": [{"end": 2.0, "start": 1.00, "op": "trim"}], "source": {"path": "clip.mp4"}}
    )
    dup = await http.post(
        "/v1/jobs",
        content=reordered,
        headers={**auth(tokens["acme"]), "Content-Type": "application/json"},
    )
    assert dup.status_code == 200 and dup.headers["Idempotent-Replayed"] == "true"
    assert dup.json()["key"] == key
    rejected = await http.post(
        "/v1/jobs?on_duplicate=reject", json=EDIT, headers=auth(tokens["acme"])
    )
    assert rejected.status_code == 409
    assert rejected.json()["error"]["code"] == "duplicate"


async def test_fifty_concurrent_posts_one_201(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    barrier = asyncio.Barrier(50)

    async def post() -> httpx.Response:
        await barrier.wait()
        return await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))

    responses = await asyncio.gather(*[post() for _ in range(50)])
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1 and codes.count(200) == 49, codes
    assert len({r.json()["key"] for r in responses}) == 1


async def test_status_lookup_and_list(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    got = await http.get(f"/v1/jobs/{key}", headers=auth(tokens["acme"]))
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "pending" and body["spec"]["operations"][0]["start_ms"] == 1000
    assert "inputs" not in body["spec"], "server paths must not leak"
    listed = await http.get("/v1/jobs?status=pending&limit=10", headers=auth(tokens["acme"]))
    assert [j["key"] for j in listed.json()["jobs"]] == [key]
    events = await http.get(f"/v1/jobs/{key}/events", headers=auth(tokens["acme"]))
    assert [e["type"] for e in events.json()["events"]] == ["job.submitted"]


async def test_another_tenants_job_looks_missing(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    missing = "vj1_" + "0" * 64
    for path in ("/v1/jobs/{}", "/v1/jobs/{}/events", "/v1/jobs/{}/output"):
        theirs = await http.get(path.format(key), headers=auth(tokens["globex"]))
        absent = await http.get(path.format(missing), headers=auth(tokens["globex"]))
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json()["error"]["code"] == absent.json()["error"]["code"]
    for action in ("cancel", "retry"):
        r = await http.post(f"/v1/jobs/{key}/{action}", headers=auth(tokens["globex"]))
        assert r.status_code == 404
    mine = await http.get(f"/v1/jobs/{key}", headers=auth(tokens["acme"]))
    assert mine.json()["status"] == "pending"


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer " + "x" * 500]
)
async def test_bad_tokens_are_401_whether_or_not_the_job_exists(
    http: httpx.AsyncClient, tokens: dict[str, str], header: str | None
) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    headers = {} if header is None else {"Authorization": header}
    a = await http.get(f"/v1/jobs/{key}", headers=headers)
    b = await http.get("/v1/jobs/vj1_" + "1" * 64, headers=headers)
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


async def test_cancel_and_retry_over_http(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    r = await http.post(f"/v1/jobs/{key}/cancel", headers=auth(tokens["acme"]))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await http.post(f"/v1/jobs/{key}/retry", headers=auth(tokens["acme"]))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = await http.post(f"/v1/jobs/{key}/retry", headers=auth(tokens["acme"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"


async def test_resubmitting_a_cancelled_key_runs_it_again(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    await http.post(f"/v1/jobs/{key}/cancel", headers=auth(tokens["acme"]))
    again = await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))
    assert again.status_code == 201 and again.json()["status"] == "pending"
    assert again.headers["Idempotent-Replayed"] == "false"


async def test_idempotency_key_header(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    h = {**auth(tokens["acme"]), "Idempotency-Key": "order-77"}
    first = await http.post("/v1/jobs", json=EDIT, headers=h)
    again = await http.post("/v1/jobs", json=EDIT, headers=h)
    assert (first.status_code, again.status_code) == (201, 200)
    other = await http.post("/v1/jobs", json={**EDIT, "operations": [{"op": "mute"}]}, headers=h)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"{not json", None),
        (b"[]", None),
        (
            b'{"source": {"path": "clip.mp4"}, "operations": [{"op": "scale", "width": 1e400}]}',
            "operations[0].width",
        ),
        (
            b'{"source": {"path": "clip.mp4"}, "operations": [{"op": "scale", "width": 123456789012345678901234567890}]}',
            "operations[0].width",
        ),
        (
            b'{"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": "\\ud800"}]}',
            "operations[0].start",
        ),
        (b'{"source": {"path": "\\ud800.mp4"}}', "source"),
        (b'{"source": {"path": "clip.mp4"}, "labels": {"k": "\\u0000"}}', "labels"),
        (b'{"source": {"path": "clip.mp4"}, "operations": "trim"}', "operations"),
        (b'{"source": 5}', "source"),
        (
            '{"source": {"path": "clip.mp4"}, "labels": {"k": "\u202e\u0301\U0001f600"}}'.encode(),
            None,
        ),
    ],
)
async def test_malformed_bodies_get_clear_4xx(
    http: httpx.AsyncClient, tokens: dict[str, str], body: bytes, path: str | None
) -> None:
    r = await http.post(
        "/v1/jobs",
        content=body,
        headers={**auth(tokens["acme"]), "Content-Type": "application/json"},
    )
    assert r.status_code < 500, r.text
    if r.status_code != 201:
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and err["message"]
        if path is not None:
            assert any(d["path"].startswith(path) for d in err["details"]), err


async def test_body_over_one_mebibyte_is_413(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    big = json.dumps({**EDIT, "labels": {"pad": "x" * 2_000_000}})
    r = await http.post(
        "/v1/jobs",
        content=big,
        headers={**auth(tokens["acme"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_bad_query_parameters_are_422(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for query in ("status=bogus", "limit=0", "limit=99999", "cursor=%%%", "limit=abc"):
        r = await http.get(f"/v1/jobs?{query}", headers=auth(tokens["acme"]))
        assert r.status_code == 422, (query, r.text)
        assert r.json()["error"]["details"]


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_running_job_shows_progress(
    http: httpx.AsyncClient, tokens: dict[str, str], db: Database, settings: Settings
) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    claims = ClaimService(db, settings)
    [job] = await claims.claim_batch("w", 1)
    await claims.heartbeat(job, 0.42)
    body: dict[str, Any] = (await http.get(f"/v1/jobs/{key}", headers=auth(tokens["acme"]))).json()
    assert body["status"] == "running" and body["progress"] == 0.42


async def test_a_metadata_only_result_has_no_file_to_download(
    http: httpx.AsyncClient, tokens: dict[str, str], db: Database, settings: Settings
) -> None:
    key = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()["key"]
    claims = ClaimService(db, settings)
    [job] = await claims.claim_batch("w", 1)
    await claims.succeed(job, {"duration_ms": 1000})
    status = await http.get(f"/v1/jobs/{key}", headers=auth(tokens["acme"]))
    assert status.json()["status"] == "succeeded"
    assert status.json()["output"] == {"duration_ms": 1000}
    got = await http.get(f"/v1/jobs/{key}/output", headers=auth(tokens["acme"]))
    assert got.status_code == 404, got.text
    assert "made no file" in got.json()["error"]["message"]


async def test_a_revoked_token_is_refused_at_once(
    http: httpx.AsyncClient, tokens: dict[str, str], db: Database
) -> None:
    import sqlalchemy as sa

    from jobs.tenants import api_keys, hash_token

    ok = await http.get("/v1/jobs", headers=auth(tokens["acme"]))
    assert ok.status_code == 200
    async with db.transaction() as conn:
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.token_hash == hash_token(tokens["acme"]))
            .values(revoked_at=sa.func.now())
        )
    refused = await http.get("/v1/jobs", headers=auth(tokens["acme"]))
    assert refused.status_code == 401, refused.text
    other = await http.get("/v1/jobs", headers=auth(tokens["globex"]))
    assert other.status_code == 200
