"""GET /v1/usage: a tenant's usage, as the ledger (`workers.ledger`) counted it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request

from jobs.api import deps
from jobs.db import db_now
from jobs.models import Usage
from jobs.tenants import TenantRef
from jobs.usage import select_usage_days, select_usage_totals

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
