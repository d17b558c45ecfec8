"""Batch submission and scheduled jobs (`run_at`), on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
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


def edit(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"path": "clip.mp4"},
        "operations": [{"op": "trim", "start": i, "end": i + 1}],
        **extra,
    }


@pytest.fixture
def app(db: Database, service: JobService, settings: Settings) -> FastAPI:
    blobs = LocalStorage(settings.data_dir / "blobs")
    return create_app(ApiState(db=db, service=service, settings=settings, blobs=blobs))


@pytest.fixture
async def http(app: FastAPI, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "acme")
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


async def test_a_batch_of_1000_with_duplicates_and_invalid_items_is_answered_item_by_item(
    http: httpx.AsyncClient,
) -> None:
    items: list[Any] = []
    for i in range(1000):
        if i % 100 == 7:
            items.append({"source": {"path": "clip.mp4"}, "operations": [{"op": "scale"}]})
        elif i % 100 == 9:
            items.append(edit(i - 9))  # the same edit as item i - 9
        else:
            items.append(edit(i))
    r = await http.post("/v1/jobs/batch", json={"jobs": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 1000
    for i, res in enumerate(results):
        if i % 100 == 7:
            assert res["status"] == 422 and "job" not in res
            assert res["error"]["code"] == "invalid_request"
            assert res["error"]["details"][0]["path"].startswith(f"jobs[{i}].operations[0]")
        elif i % 100 == 9:
            assert res["status"] == 200
            assert res["job"]["key"] == results[i - 9]["job"]["key"]  # the first item's job
        else:
            assert res["status"] == 201, (i, res)
    created = {res["job"]["key"] for res in results if res["status"] == 201}
    assert len(created) == 1000 - 20
    listed = await http.get("/v1/jobs", params={"limit": 500, "status": "pending"})
    assert len(listed.json()["jobs"]) == 500
    # Rejecting duplicates: an in-batch duplicate (and a repeat of an earlier batch) is 409.
    again = await http.post(
        "/v1/jobs/batch",
        params={"on_duplicate": "reject"},
        json={"jobs": [edit(5000), edit(5000), edit(0)]},
    )
    assert [x["status"] for x in again.json()["results"]] == [201, 409, 409]


async def test_a_batch_idempotency_key_replays_the_whole_answer(http: httpx.AsyncClient) -> None:
    body = {"jobs": [edit(1), edit(2), {"source": {}}]}
    headers = {"Idempotency-Key": "batch-1"}
    first = await http.post("/v1/jobs/batch", json=body, headers=headers)
    second = await http.post("/v1/jobs/batch", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.headers["Idempotent-Replayed"] == "false"
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert [x["status"] for x in first.json()["results"]] == [201, 201, 422]
    other = await http.post("/v1/jobs/batch", json={"jobs": [edit(3)]}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("jobs", [[], [{}] * 1001, {"not": "a list"}])
async def test_a_batch_of_the_wrong_size_or_shape_is_refused(
    http: httpx.AsyncClient, jobs: Any
) -> None:
    r = await http.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["path"].startswith("jobs")
    assert (await http.get("/v1/jobs")).json()["jobs"] == []


async def test_run_at_is_honoured_to_the_database_clock(
    http: httpx.AsyncClient, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = await db.now() + dt.timedelta(seconds=1.5)
    r = await http.post("/v1/jobs", json=edit(1, run_at=at.isoformat()))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "pending"
    assert dt.datetime.fromisoformat(job["run_after"]) == at  # listed with its time
    # The same edit at another time is the same job: run_at is not part of the key.
    same = await http.post("/v1/jobs", json=edit(1, run_at=(at + dt.timedelta(days=1)).isoformat()))
    assert same.status_code == 200 and same.json()["key"] == job["key"]
    claims = ClaimService(db, settings)
    # A worker whose clock runs ten minutes fast still cannot take it early.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 600)
    assert await claims.claim_batch("fast", 10) == []
    monkeypatch.undo()
    assert await claims.claim_batch("w", 10) == []  # not yet due
    while not (got := await claims.claim_batch("w", 10)):
        await asyncio.sleep(0.05)
    [claimed] = got
    assert claimed.key == job["key"]
    # Claimed once due by the database's clock (the claim's own timestamp), not before.
    assert claimed.started_at is not None and claimed.started_at >= at


async def test_a_scheduled_job_can_be_cancelled_before_it_runs(
    http: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    key = (await http.post("/v1/jobs", json=edit(2, run_at=at.isoformat()))).json()["key"]
    r = await http.post(f"/v1/jobs/{key}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


@pytest.mark.parametrize("value", ["2026-12-01T10:00:00", "tomorrow", "1999-01-01T00:00:00Z", 12])
async def test_a_bad_run_at_is_refused_with_what_is_allowed(
    http: httpx.AsyncClient, value: Any
) -> None:
    r = await http.post("/v1/jobs", json=edit(3, run_at=value))
    assert r.status_code == 422
    detail = r.json()["error"]["details"][0]
    assert detail["path"] == "run_at" and detail["message"]


async def test_a_batch_answer_quoting_a_nul_is_stored_and_replayed(http: httpx.AsyncClient) -> None:
    """PostgreSQL's JSONB cannot hold U+0000; an answer whose error quotes one (a field name
    here) is still stored for its Idempotency-Key and replayed, not a 500."""
    body = {"jobs": [{**edit(1), "bad\u0000field": 1}, edit(2)]}
    headers = {"Idempotency-Key": "nul-1"}
    first = await http.post("/v1/jobs/batch", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert [x["status"] for x in first.json()["results"]] == [422, 201]
    second = await http.post("/v1/jobs/batch", json=body, headers=headers)
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"


def outputs_edit(*names: str, **extra: Any) -> dict[str, Any]:
    return {
        **edit(7),
        "outputs": [{"name": n, "container": "mp4", "height": 120 + 20 * i} for i, n in enumerate(names)],
        **extra,
    }


async def test_a_scheduled_job_of_several_tasks_starts_none_of_them_early(
    http: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    at = await db.now() + dt.timedelta(seconds=1.5)
    r = await http.post("/v1/jobs", json=outputs_edit("a", "b", run_at=at.isoformat()))
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    tasks = (await http.get(f"/v1/jobs/{key}/tasks")).json()["tasks"]
    assert {t["status"] for t in tasks} == {"pending"}
    claims = ClaimService(db, settings)
    assert await claims.claim_batch("w", 10) == []  # no task is due before the job's run_at
    # A job due now that needs one of those tasks brings that one forward, only that one.
    now = await http.post("/v1/jobs", json=outputs_edit("a"))
    assert now.status_code == 201, now.text
    [early] = await claims.claim_batch("w", 10)
    assert early.key == next(t["key"] for t in tasks if t["name"] == "a")
    assert await claims.claim_batch("w", 10) == []
    while not (got := await claims.claim_batch("w", 10)):
        await asyncio.sleep(0.05)
    [late] = got
    assert late.key == next(t["key"] for t in tasks if t["name"] == "b")
    assert late.started_at is not None and late.started_at >= at
