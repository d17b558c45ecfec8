"""A batch stores what the same items submitted one by one store: the same answers, rows,
events and wake-ups, on SQLite and a real PostgreSQL (the batch takes one transaction for
all its new runs, the single requests one each)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from jobs import outbox
from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.models import Job, OutboxEvent
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant

AT = "2031-05-04T03:02:01+00:00"


def edit(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"path": "clip.mp4"},
        "operations": [{"op": "trim", "start": i, "end": i + 1}],
        **extra,
    }


def several(i: int) -> dict[str, Any]:
    """An edit of two named outputs: a job of several tasks."""
    outputs = [{"name": n, "container": "mp4", "height": 120 + 20 * k} for k, n in enumerate("ab")]
    return {**edit(i), "outputs": outputs}


# Each item with what it must be answered (the same in a batch and one by one).
MIXED: list[tuple[Any, int]] = [
    (edit(1), 201),  # new
    (edit(2, priority=5, labels={"show": "news"}), 201),  # new
    (edit(1, priority=9), 200),  # a duplicate of item 0 inside the batch
    (edit(100), 200),  # a pending job that exists already
    ({"source": {"path": "clip.mp4"}, "operations": [{"op": "scale"}]}, 422),  # invalid
    (edit(101, max_attempts=5), 201),  # a failed job: runs again on its row
    (several(7), 201),  # a job of several tasks
    (edit(3, source={"path": "missing.mp4"}), 422),  # no such source
    (edit(2), 200),  # a duplicate of item 1
    (edit(4, run_at=AT), 201),  # scheduled
]


class Recorder:
    """The service's after-commit hook: each call's events (the wake-up signal)."""

    def __init__(self) -> None:
        self.calls: list[list[outbox.Event]] = []

    def __call__(self, events: Sequence[outbox.Event]) -> None:
        self.calls.append(list(events))


@pytest.fixture
def woken() -> Recorder:
    return Recorder()


@pytest.fixture
def woken_service(db: Database, settings: Settings, woken: Recorder) -> JobService:
    return JobService(db, settings, after_commit=woken)


async def client(
    db: Database, service: JobService, settings: Settings, name: str
) -> tuple[TenantRef, httpx.AsyncClient]:
    async with db.transaction() as conn:
        tenant, token = await create_tenant(conn, name)
    app = create_app(
        ApiState(
            db=db, service=service, settings=settings, blobs=LocalStorage(settings.data_dir / "b")
        )
    )
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    return tenant, httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers)


@pytest.fixture
async def two(
    db: Database, woken_service: JobService, settings: Settings
) -> AsyncIterator[list[tuple[TenantRef, httpx.AsyncClient]]]:
    """Two tenants, each with a failed job (edit 101) and a pending one (edit 100)."""
    pair = [await client(db, woken_service, settings, n) for n in ("batched", "single")]
    for tenant, _ in pair:
        await woken_service.submit(tenant, EditRequest.model_validate(edit(101)))
    claims = ClaimService(db, settings)
    for job in await claims.claim_batch("w", 2):
        await claims.fail(job, code="bad", message="nope", retryable=False)
    for tenant, _ in pair:
        await woken_service.submit(tenant, EditRequest.model_validate(edit(100)))
    yield pair
    for _, http in pair:
        await http.aclose()


async def rows(db: Database, tenant: TenantRef) -> list[Job]:
    jobs = Job.__table__  # type: ignore[attr-defined]
    async with db.transaction() as conn:
        found = await conn.execute(sa.select(jobs).where(jobs.c.tenant_id == tenant.id))
        return [Job.model_construct(**r) for r in found.mappings()]


async def events(db: Database, tenant: TenantRef, after: int = 0) -> list[OutboxEvent]:
    table = OutboxEvent.__table__  # type: ignore[attr-defined]
    query = sa.select(table).where(table.c.tenant_id == tenant.id, table.c.id > after)
    async with db.transaction() as conn:
        found = await conn.execute(query.order_by(table.c.id))
        return [OutboxEvent.model_construct(**r) for r in found.mappings()]


def label_keys(jobs: list[Job], answers: list[dict[str, Any]]) -> dict[str, str]:
    """A tenant-free name for each key: the first item answered with it, else its task."""
    names: dict[str, str] = {}
    for i, a in enumerate(answers):
        if "job" in a:
            names.setdefault(a["job"]["key"], f"item {i}")
    tasks = sorted((j for j in jobs if j.key not in names), key=lambda j: j.spec.get("name", ""))
    for j in tasks:
        names[j.key] = f"{j.role} {j.status} {j.spec.get('kind')} {j.priority}"
    return names


def comparable(jobs: list[Job], names: dict[str, str]) -> list[tuple[Any, ...]]:
    def spec(j: Job) -> Any:
        if j.role == "task":  # names the keys of the tasks it depends on (tenant-derived)
            return sorted(names[k] for k in j.spec.get("deps", {}).values())
        return j.spec

    return sorted(
        (names[j.key], j.role, j.status, j.priority, j.max_attempts, j.attempts, j.labels,
         j.waiting, j.error_code, j.cancel_requested, spec(j),
         j.run_after.isoformat() if names[j.key] == "item 9" and j.run_after else None)
        for j in jobs
    )  # fmt: skip


def by_job(evs: list[OutboxEvent], names: dict[str, str]) -> dict[str, list[tuple[str, Any]]]:
    """Each job's events in order: type and payload, without ids and tenant-derived keys."""
    out: dict[str, list[tuple[str, Any]]] = {}
    skip = {"job_id", "tenant_id", "key", "event_id"}
    for e in evs:
        payload = {k: v for k, v in e.payload.items() if k not in skip}
        out.setdefault(names[e.job_key], []).append((e.type, payload))
    return out


async def test_a_mixed_batch_stores_the_same_rows_and_events_as_the_items_one_by_one(
    db: Database, two: list[tuple[TenantRef, httpx.AsyncClient]], woken: Recorder
) -> None:
    (batched, bhttp), (single, shttp) = two
    mark = max(e.id or 0 for e in await events(db, batched) + await events(db, single))
    calls = len(woken.calls)
    r = await bhttp.post("/v1/jobs/batch", json={"jobs": [item for item, _ in MIXED]})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    assert [x["status"] for x in got] == [status for _, status in MIXED]
    assert got[2]["job"] == got[0]["job"] and got[8]["job"] == got[1]["job"]
    assert got[4]["error"]["details"][0]["path"].startswith("jobs[4].operations[0]")
    assert got[7]["error"]["code"] == "source_not_found"
    # One wake-up for the whole batch, carrying every event it wrote.
    written = await events(db, batched, mark)
    assert len(woken.calls) == calls + 1
    assert [e.event_id for e in woken.calls[-1]] == [e.event_id for e in written]
    # The same items one by one, for the other tenant: its own new jobs, the same answers.
    singles = []
    for item, _ in MIXED:
        one = await shttp.post("/v1/jobs", json=item)
        singles.append(
            {"status": one.status_code, **({"job": one.json()} if one.status_code < 300 else {})}
        )
    assert [x["status"] for x in singles] == [x["status"] for x in got]
    assert not {x["job"]["key"] for x in got if "job" in x} & {
        x["job"]["key"] for x in singles if "job" in x
    }
    brows, srows = await rows(db, batched), await rows(db, single)
    bnames, snames = label_keys(brows, got), label_keys(srows, singles)
    assert len(brows) == len(srows) == 8  # 6 jobs (with 100 and 101), one of them of 2 tasks
    assert comparable(brows, bnames) == comparable(srows, snames)
    assert by_job(await events(db, batched), bnames) == by_job(await events(db, single), snames)
    # New jobs keep the items' order (ids), as one by one.
    created = [got[i]["job"]["key"] for i in (0, 1, 6, 9)]
    ids = {j.key: j.id for j in brows}
    assert [ids[k] for k in created] == sorted(ids[k] for k in created)
    scheduled = dt.datetime.fromisoformat(got[9]["job"]["run_after"])
    assert scheduled == dt.datetime.fromisoformat(AT)


async def test_a_batch_rejecting_duplicates_answers_409_like_single_requests(
    two: list[tuple[TenantRef, httpx.AsyncClient]],
) -> None:
    (_, bhttp), (_, shttp) = two
    items = [edit(1), edit(1), edit(100), edit(101), edit(2)]
    params = {"on_duplicate": "reject"}
    r = await bhttp.post("/v1/jobs/batch", params=params, json={"jobs": items})
    got = r.json()["results"]
    singles = [(await shttp.post("/v1/jobs", params=params, json=i)).status_code for i in items]
    assert [x["status"] for x in got] == singles == [201, 409, 409, 201, 201]
    assert got[1]["error"]["code"] == got[2]["error"]["code"] == "duplicate"
    assert got[1]["error"]["details"]["key"] == got[0]["job"]["key"]


async def test_the_in_flight_cap_is_counted_item_by_item_in_a_batch(
    db: Database, settings: Settings, woken: Recorder
) -> None:
    capped = settings.model_copy(update={"max_in_flight_per_tenant": 3})
    service = JobService(db, capped, after_commit=woken)
    pair = [await client(db, service, capped, n) for n in ("batched", "single")]
    for tenant, _ in pair:
        await service.submit(tenant, EditRequest.model_validate(edit(100)))  # 1 in flight
    items = [edit(1), edit(2), edit(1), edit(100), edit(3), edit(4)]
    (batched, bhttp), (single, shttp) = pair
    got = (await bhttp.post("/v1/jobs/batch", json={"jobs": items})).json()["results"]
    singles = [(await shttp.post("/v1/jobs", json=i)).status_code for i in items]
    assert [x["status"] for x in got] == singles == [201, 201, 200, 200, 429, 429]
    assert got[4]["error"]["code"] == "too_many_in_flight"
    assert len(await rows(db, batched)) == len(await rows(db, single)) == 3
    for _, http in pair:
        await http.aclose()


async def test_a_batch_whose_outbox_insert_fails_leaves_no_job_and_no_event(
    db: Database, woken_service: JobService, tenant: TenantRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("outbox insert failed")

    monkeypatch.setattr(outbox, "insert_events", broken)
    items = [EditRequest.model_validate(edit(i)) for i in range(3)]
    prepared = [(req, await woken_service.prepare(tenant, req)) for req in items]
    with pytest.raises(RuntimeError):
        await woken_service.submit_many(tenant, prepared)
    assert await rows(db, tenant) == []
    assert await events(db, tenant) == []
