"""Migrations and models agree on both databases, and the migrations go down and up."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from jobs.db import Database
from jobs.models import metadata
from migrations import downgrade, upgrade


async def diff(db: Database) -> list[Any]:
    def compare(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(compare)


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_autogenerate_finds_no_difference(db: Database) -> None:
    assert await diff(db) == []


async def test_downgrade_to_base_and_back(db: Database) -> None:
    await downgrade(db.engine, "base")
    assert await tables(db) <= {"alembic_version"}
    await upgrade(db.engine)
    assert {"jobs", "outbox", "processed_events", "tenants", "api_keys", "blobs"} <= await tables(
        db
    )
    assert await diff(db) == []


async def test_hot_queries_have_partial_indexes(db: Database) -> None:
    async with db.engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda c: {i["name"] for i in sa.inspect(c).get_indexes("jobs")}
        )
        outbox = await conn.run_sync(
            lambda c: {i["name"] for i in sa.inspect(c).get_indexes("outbox")}
        )
    assert {"ix_jobs_pending_due", "ix_jobs_running"} <= indexes
    assert "ix_jobs_key" not in indexes  # uq_jobs_tenant_key serves every lookup by key
    assert "ix_outbox_unpublished" in outbox
