"""A PostgreSQL connection lost under `fetch_prepared` (asyncpg straight, outside a
transaction) is reported the way SQLAlchemy reports a lost connection: a DBAPIError with
`connection_invalidated`, which the API answers 503 with the JSON envelope. The fault
harness found a bare asyncpg ConnectionDoesNotExistError reaching the client as a text/plain
500 while PostgreSQL restarted."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from jobs.db import Database, fetch_prepared


async def _terminate_sleepers(url: str) -> None:
    """Terminate the backend running pg_sleep, once it runs (from another connection)."""
    admin = Database(url)
    try:
        for _ in range(100):
            async with admin.engine.connect() as conn:
                killed = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()"
                        )
                    )
                ).scalar_one()
            if killed:
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.dispose()


@pytest.mark.postgres
async def test_lost_connection_is_a_dbapi_error_with_the_connection_invalidated(pg_db_url: str) -> None:
    db = Database(pg_db_url, pool_size=1, max_overflow=0)
    try:
        killer = asyncio.create_task(_terminate_sleepers(pg_db_url))
        with pytest.raises(sa.exc.DBAPIError) as caught:
            async with db.single_statement() as conn:
                await fetch_prepared(conn, "SELECT pg_sleep(10) AS slept")
        await killer
        assert caught.value.connection_invalidated
        async with db.single_statement() as conn:  # the pool gives a fresh connection
            assert (await fetch_prepared(conn, "SELECT 1 AS one"))[0]["one"] == 1
    finally:
        await db.dispose()
