"""Live streams as Server-Sent Events: one job's events and progress, or a tenant's events.

`GET /v1/jobs/{key}/events?follow=true`: the job's outbox events in order, then new ones
and progress changes as they happen, until the job ends. Each event's SSE `id` is its
outbox id; a client that reconnects with `Last-Event-ID` gets every event after it. A job's
outbox rows are written while its row is locked, so their ids are in commit order and
resuming loses nothing. Progress (`event: progress`, no id) is a sample, not a record.

`GET /v1/events/stream`: every event of the tenant, from now (or after `Last-Event-ID`).
Across jobs, transactions commit out of id order, so this stream only sends rows older than
`SETTLE_SECONDS` (0.5 s): a transaction that commits later than that after
writing its event could be missed by a resumed stream (job transactions are single short
statements).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from jobs.api import deps
from jobs.api.views import event_view
from jobs.db import Database, db_now
from jobs.models import Job, OutboxEvent
from jobs.status import JobStatus
from jobs.tenants import TenantRef

router = APIRouter(tags=["streams"])
outbox = OutboxEvent.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]
TERMINAL = tuple(s.value for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED))
SETTLE_SECONDS = 0.5
BATCH = 500
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def last_event_id(value: str | None) -> int | None:
    """The outbox id a client resumes after (`Last-Event-ID`); junk means from the start."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def sse(data: dict[str, Any], *, event: str, id_: int | None = None) -> bytes:
    lines = [] if id_ is None else [f"id: {id_}"]
    lines += [f"event: {event}", "data: " + json.dumps(data, separators=(",", ":"))]
    return ("\n".join(lines) + "\n\n").encode()


async def _job_events_after(conn: Any, job_id: int, after: int) -> list[OutboxEvent]:
    stmt = (
        sa.select(outbox)
        .where(outbox.c.job_id == job_id, outbox.c.id > after)
        .order_by(outbox.c.id)
        .limit(BATCH)
    )
    return [OutboxEvent.model_construct(**r) for r in (await conn.execute(stmt)).mappings()]


async def _tenant_events_after(conn: Any, tenant_id: str, after: int) -> list[OutboxEvent]:
    stmt = (
        sa.select(outbox)
        .where(
            outbox.c.id > after,
            outbox.c.tenant_id == tenant_id,
            outbox.c.created_at <= db_now(-SETTLE_SECONDS),
        )
        .order_by(outbox.c.id)
        .limit(BATCH)
    )
    return [OutboxEvent.model_construct(**r) for r in (await conn.execute(stmt)).mappings()]


def _view(event: OutboxEvent) -> dict[str, Any]:
    view = event_view(event)
    view.pop("published", None)
    return {"key": event.job_key, **view}


async def follow_job(
    db: Database, job: Job, after: int | None, poll: float, keepalive: float
) -> AsyncIterator[bytes]:
    """The job's events after `after` (all when None), then live ones until it ends."""
    cursor = after or 0
    progress: float | None = None
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    yield b"retry: 1000\n\n"
    while True:
        async with db.reader.connect() as conn:
            # The row first: if it is terminal, its last event committed with it and the
            # read below sees it, so the stream ends after sending it.
            row = (
                await conn.execute(
                    sa.select(jobs.c.status, jobs.c.progress).where(jobs.c.id == job.id)
                )
            ).one_or_none()
            events = await _job_events_after(conn, job.id or 0, cursor)
        for event in events:
            cursor = event.id or cursor
            yield sse(_view(event), event=event.type, id_=cursor)
        if row is None:
            return
        status, now_progress = row
        if status == JobStatus.RUNNING and now_progress != progress:
            progress = now_progress
            data = {"key": job.key, "status": status, "progress": round(now_progress, 4)}
            yield sse(data, event="progress")
        if events:
            quiet_since = loop.time()
        if status in TERMINAL and len(events) < BATCH:
            return
        if len(events) < BATCH:
            if loop.time() - quiet_since >= keepalive:
                quiet_since = loop.time()
                yield b": keep-alive\n\n"
            await asyncio.sleep(poll)


async def follow_tenant(
    db: Database, tenant_id: str, after: int | None, poll: float, keepalive: float
) -> AsyncIterator[bytes]:
    if after is None:
        async with db.reader.connect() as conn:
            after = (await conn.execute(sa.select(sa.func.max(outbox.c.id)))).scalar() or 0
    cursor = after
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    yield b"retry: 1000\n\n"
    while True:
        async with db.reader.connect() as conn:
            events = await _tenant_events_after(conn, tenant_id, cursor)
        for event in events:
            cursor = event.id or cursor
            yield sse(_view(event), event=event.type, id_=cursor)
        if events:
            quiet_since = loop.time()
        if len(events) < BATCH:
            if loop.time() - quiet_since >= keepalive:
                quiet_since = loop.time()
                yield b": keep-alive\n\n"
            await asyncio.sleep(poll)


def job_stream_response(request: Request, job: Job, last_id: str | None) -> StreamingResponse:
    st = deps.state(request)
    s = st.settings
    body = follow_job(
        st.db, job, last_event_id(last_id), s.stream_poll_seconds, s.stream_keepalive_seconds
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/v1/events/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        401: {"description": "error", "content": {"application/json": {}}},
    },
)
async def tenant_stream(
    request: Request,
    tenant: Annotated[TenantRef, Depends(deps.tenant)],
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=40)
    ] = None,
) -> StreamingResponse:
    """Every event of the caller's jobs as Server-Sent Events, live; resumable."""
    st = deps.state(request)
    s = st.settings
    body = follow_tenant(
        st.db,
        tenant.id,
        last_event_id(last_event_id_header),
        s.stream_poll_seconds,
        s.stream_keepalive_seconds,
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
