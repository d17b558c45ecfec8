"""Tenant usage: the ledger's statements and `GET /v1/usage`.

The usage ledger (`workers.ledger`) adds each succeeded job's media seconds once, in the
transaction that records the event id as processed; this module only holds its SQL and
the read side. Media time is kept in integer milliseconds so sums are exact.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.api import deps
from jobs.db import db_now, insert_on_conflict
from jobs.models import Usage
from jobs.tenants import TenantRef

usage = Usage.__table__  # type: ignore[attr-defined]


async def add_usage(conn: AsyncConnection, tenant_id: str, day: dt.date, media_ms: int) -> None:
    """One finished job: +1 job and +media_ms on the tenant's row for `day` (an upsert)."""
    stmt = insert_on_conflict(conn, usage).values(
        tenant_id=tenant_id, day=day, jobs=1, media_ms=media_ms, updated_at=db_now()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "day"],
        set_={
            "jobs": usage.c.jobs + 1,
            "media_ms": usage.c.media_ms + stmt.excluded.media_ms,
            "updated_at": db_now(),
        },
    )
    await conn.execute(stmt)


async def select_usage_days(
    conn: AsyncConnection, tenant_id: str, since: dt.date | None = None
) -> list[Usage]:
    stmt = sa.select(usage).where(usage.c.tenant_id == tenant_id)
    if since is not None:
        stmt = stmt.where(usage.c.day >= since)
    rows = (await conn.execute(stmt.order_by(usage.c.day))).mappings()
    return [Usage.model_validate(dict(r)) for r in rows]


async def select_usage_totals(conn: AsyncConnection, tenant_id: str) -> tuple[int, int]:
    """(jobs, media_ms) over all time."""
    stmt = sa.select(
        sa.func.coalesce(sa.func.sum(usage.c.jobs), 0),
        sa.func.coalesce(sa.func.sum(usage.c.media_ms), 0),
    ).where(usage.c.tenant_id == tenant_id)
    jobs, media_ms = (await conn.execute(stmt)).one()
    return int(jobs), int(media_ms)


router = APIRouter(prefix="/v1/usage", tags=["usage"])


def _day_view(row: Usage) -> dict[str, Any]:
    return {"day": row.day.isoformat(), "jobs": row.jobs, "media_seconds": row.media_ms / 1000}


@router.get("", responses={401: {"description": "error", "content": {"application/json": {}}}})
async def get_usage(
    request: Request,
    tenant: Annotated[TenantRef, Depends(deps.tenant)],
    days: Annotated[int, Query(ge=1, le=366)] = 31,
) -> dict[str, Any]:
    """The caller's succeeded jobs and media seconds: all-time totals and the last `days` days.

    Counted by the usage ledger from `job.succeeded` events, so it trails the jobs by the
    relay and ledger lag (normally well under a second).
    """
    st = deps.state(request)
    async with st.db.engine.connect() as conn:
        today = (await conn.execute(sa.select(db_now()))).scalar_one().date()
        rows = await select_usage_days(conn, tenant.id, today - dt.timedelta(days=days - 1))
        jobs, media_ms = await select_usage_totals(conn, tenant.id)
    return {
        "tenant": tenant.name,
        "totals": {"jobs": jobs, "media_seconds": media_ms / 1000},
        "days": [_day_view(r) for r in rows],
    }
