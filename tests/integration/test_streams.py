"""Live streams over a real HTTP server (uvicorn on 127.0.0.1), on SQLite and PostgreSQL:
a job's events and progress until it ends, the tenant-wide stream, and both resuming after a
dropped connection with Last-Event-ID without losing or repeating an event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from jobs.settings import Settings
from tests.integration.webhook_stack import Hooks, hooks_on


@pytest.fixture
async def hooks(db_url: str, settings: Settings) -> AsyncIterator[Hooks]:
    async with hooks_on(db_url, settings) as h:
        yield h


@pytest.fixture
async def base_url(hooks: Hooks) -> AsyncIterator[str]:
    config = uvicorn.Config(
        hooks.c.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def read_events(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    until: int | None = None,
) -> list[dict[str, Any]]:
    """SSE messages (id, event, data) until `until` of them arrived or the stream ended."""
    got: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line == "":
                if "event" in current:
                    got.append(current)
                    if until is not None and len(got) >= until:
                        return got  # dropping the connection here
                current = {}
            elif line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
    return got


async def test_job_stream_resumes_after_a_dropped_connection(hooks: Hooks, base_url: str) -> None:
    key = await hooks.submit(1)
    claims = hooks.c.claims
    url = f"{base_url}/v1/jobs/{key}/events?follow=true"
    async with httpx.AsyncClient(timeout=20) as client:
        first = await read_events(client, url, hooks.auth(), until=1)
        assert [e["event"] for e in first] == ["job.submitted"]
        job = await claims.claim_by_key(hooks.tenant.id, key, "w1")
        assert job is not None
        await claims.heartbeat(job, progress=0.5)
        # While nobody listens: the job finishes.
        await claims.succeed(job, {"duration_ms": 1000})
        rest = await read_events(client, url, {**hooks.auth(), "Last-Event-ID": first[-1]["id"]})
    ids = [e["id"] for e in first + rest if "id" in e]
    events = [e["event"] for e in rest if e["event"] != "progress"]
    assert events == ["job.claimed", "job.succeeded"]  # nothing lost, nothing repeated
    assert ids == sorted(ids, key=int) and len(set(ids)) == len(ids)
    assert rest[-1]["data"]["data"]["status"] == "succeeded"
    all_outbox = [e.event_id for e in await hooks.c.service.events(hooks.tenant, key)]
    assert [e["data"]["event_id"] for e in first + rest if "id" in e] == all_outbox


async def test_job_stream_shows_progress_live_and_ends_with_the_job(
    hooks: Hooks, base_url: str
) -> None:
    key = await hooks.submit(2)
    job = await hooks.c.claims.claim_by_key(hooks.tenant.id, key, "w1")
    assert job is not None
    url = f"{base_url}/v1/jobs/{key}/events?follow=true"

    async def work() -> None:
        await asyncio.sleep(0.3)
        await hooks.c.claims.heartbeat(job, progress=0.25)
        await asyncio.sleep(0.3)
        await hooks.c.claims.heartbeat(job, progress=0.75)
        await asyncio.sleep(0.3)
        await hooks.c.claims.succeed(job, {})

    worker = asyncio.create_task(work())
    async with httpx.AsyncClient(timeout=20) as client:
        got = await asyncio.wait_for(read_events(client, url, hooks.auth()), 15)
    await worker
    progress = [e["data"]["progress"] for e in got if e["event"] == "progress"]
    assert 0.25 in progress and 0.75 in progress and progress == sorted(progress)
    assert [e["event"] for e in got if e["event"] != "progress"] == [
        "job.submitted",
        "job.claimed",
        "job.succeeded",
    ]


async def test_tenant_stream_resumes_without_losing_events(hooks: Hooks, base_url: str) -> None:
    url = f"{base_url}/v1/events/stream"
    async with httpx.AsyncClient(timeout=20) as client:
        reader = asyncio.create_task(read_events(client, url, hooks.auth(), until=3))
        await asyncio.sleep(0.5)  # connected: the stream starts from now
        keys = [await hooks.submit(i) for i in range(10, 13)]
        first = await asyncio.wait_for(reader, 15)
        more = [await hooks.submit(i) for i in range(13, 15)]  # while disconnected
        rest = await asyncio.wait_for(
            read_events(client, url, {**hooks.auth(), "Last-Event-ID": first[-1]["id"]}, until=2),
            15,
        )
    assert [e["data"]["key"] for e in first] == keys
    assert [e["data"]["key"] for e in rest] == more
    assert {e["event"] for e in first + rest} == {"job.submitted"}


async def test_streams_are_tenant_isolated(hooks: Hooks, base_url: str) -> None:
    from jobs.tenants import create_tenant

    key = await hooks.submit(3)
    async with hooks.db.transaction() as conn:
        _, other = await create_tenant(conn, "globex")
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(
            f"{base_url}/v1/jobs/{key}/events?follow=true",
            headers={"Authorization": f"Bearer {other}"},
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await client.get(f"{base_url}/v1/events/stream")
        assert r.status_code == 401
