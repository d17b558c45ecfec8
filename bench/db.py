"""Throwaway databases on the benchmark's PostgreSQL server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from jobs.db import Database
from migrations import upgrade


def plain_dsn(url: str) -> str:
    """The asyncpg/libpq form of a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE, VACUUM)."""
    import asyncpg

    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def throwaway_database(server_url: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh (by default migrated) database on the server, dropped afterwards."""
    name = f"vj_bench_{uuid.uuid4().hex[:8]}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        if migrate:
            db = Database(url)
            await upgrade(db.engine)
            await db.dispose()
        yield url
    finally:
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
