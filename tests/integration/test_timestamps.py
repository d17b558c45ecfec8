"""Python-side datetimes round-trip as UTC on both databases and compare with db_now()."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from jobs.db import Database, db_now
from jobs.models import IdempotencyKey
from jobs.tenants import TenantRef

idem = IdempotencyKey.__table__  # type: ignore[attr-defined]


async def test_python_datetimes_round_trip_and_compare_with_the_database_clock(db: Database, tenant: TenantRef) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    async with db.transaction() as conn:
        await conn.execute(idem.insert().values(tenant_id=tenant.id, client_key="k", request_hash="h", job_key="j", expires_at=when))
        stored = (await conn.execute(sa.select(idem.c.expires_at))).scalar_one()
        future = (await conn.execute(sa.select(sa.func.count()).where(idem.c.expires_at > db_now()))).scalar_one()
    assert stored == when and stored.tzinfo is not None and stored.utcoffset() == dt.timedelta(0)
    assert future == 1


async def test_naive_datetimes_are_refused(db: Database, tenant: TenantRef) -> None:
    async with db.transaction() as conn:
        with pytest.raises(sa.exc.StatementError):
            await conn.execute(idem.insert().values(tenant_id=tenant.id, client_key="n", request_hash="h", job_key="j", expires_at=dt.datetime(2030, 1, 1)))
