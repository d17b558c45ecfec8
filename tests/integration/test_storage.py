"""PostgreSQL storage choices (migration 0004), checked on a real server's own counters."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import create_tenant

EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 1, "end": 2}]}


async def _updates(db: Database, at_least: int = 0) -> tuple[int, int]:
    """(updates, HOT updates) of `jobs` so far. Each connection (NullPool: one per
    transaction) reports its statistics when it ends, so wait for `at_least` updates."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                        " WHERE relname = 'jobs'"
                    )
                )
            ).one()
        if row[0] >= at_least or asyncio.get_running_loop().time() > deadline:
            return int(row[0]), int(row[1])
        await asyncio.sleep(0.05)


async def test_heartbeats_are_hot_updates_and_the_tables_carry_their_settings(
    pg_db_url: str, settings: Settings
) -> None:
    db = Database(pg_db_url, poolclass=sa.pool.NullPool)  # stats flushed per connection
    try:
        async with db.transaction() as conn:
            tenant, _ = await create_tenant(conn, "acme")
        service = JobService(db, settings)
        await service.submit(tenant, EditRequest.model_validate(EDIT))
        claims = ClaimService(db, settings)
        [job] = await claims.claim_batch("w", 1)
        before = await _updates(db, at_least=1)  # the claim
        for i in range(20):
            await claims.heartbeat(job, i / 20)
        after = await _updates(db, at_least=before[0] + 20)
        assert after[0] - before[0] == 20
        # Every heartbeat kept its row version on the page and wrote no index entry.
        assert after[1] - before[1] == 20
        async with db.engine.connect() as conn:
            options = (
                await conn.execute(
                    sa.text(
                        "SELECT relname, reloptions FROM pg_class WHERE relname IN ('jobs', 'outbox')"
                    )
                )
            ).all()
        by_table = {name: set(opts or []) for name, opts in options}
        assert "fillfactor=80" in by_table["jobs"]
        assert "autovacuum_vacuum_scale_factor=0.02" in by_table["outbox"]
    finally:
        await db.dispose()
