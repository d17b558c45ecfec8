"""Real databases for tests: a migrated template, copied per test.

PostgreSQL: the test command starts a private server and exports VIDJOBS_TEST_DATABASE_URL.
A template database is migrated once per session; each test gets `CREATE DATABASE ...
TEMPLATE`, which is a file copy on the server. SQLite: a migrated template file, copied.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from jobs.db import Database
from migrations import upgrade

PG_ENV = "VIDJOBS_TEST_DATABASE_URL"


def require_service(name: str, how: str) -> None:
    """Skip (or, with VIDJOBS_REQUIRE_SERVICES=1, fail) a test whose service is missing."""
    message = f"{name} is not available: {how}"
    if os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        require_service(
            "PostgreSQL",
            f"set {PG_ENV} (make test starts a private server and sets it)",
        )
    assert url is not None
    return url


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin(url: str, *sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


class PgTemplates:
    """One migrated template per session; a fresh copy per test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = f"vj_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []

    def setup(self) -> None:
        asyncio.run(_admin(self.url, f'CREATE DATABASE "{self.template}"'))

        async def migrate() -> None:
            db = Database(_with_db(self.url, self.template))
            await upgrade(db.engine)
            await db.dispose()

        asyncio.run(migrate())

    def new_database(self) -> str:
        name = f"vj_t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(self.url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return _with_db(self.url, name)

    def drop(self, url: str) -> None:
        name = url.rpartition("/")[2]
        asyncio.run(_admin(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def teardown(self) -> None:
        asyncio.run(_admin(self.url, f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))


class SqliteTemplate:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "template.db"

    def setup(self) -> None:
        async def migrate() -> None:
            db = Database(f"sqlite+aiosqlite:///{self.path}")
            await upgrade(db.engine)
            await db.dispose()

        asyncio.run(migrate())

    def new_database(self, folder: Path) -> str:
        target = folder / f"{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"
