"""Tenant usage: the ledger's statements (the route is `jobs.api.usage`).

The usage ledger (`workers.ledger`) adds each succeeded job's media seconds once, in the
transaction that records the event id as processed; this module only holds its SQL and
the read side. Media time is kept in integer milliseconds so sums are exact.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now, insert_on_conflict
from jobs.models import Usage

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
