"""Shared fixtures: a migrated database per test, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.tenants import TenantRef, create_tenant
from tests.support.databases import PgTemplates, SqliteTemplate, pg_url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    tpl = SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))
    tpl.setup()
    return tpl


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[PgTemplates]:
    tpl = PgTemplates(pg_url())
    tpl.setup()
    yield tpl
    tpl.teardown()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        tpl: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield tpl.new_database(tmp_path)
        return
    pg: PgTemplates = request.getfixturevalue("pg_templates")
    url = pg.new_database()
    yield url
    pg.drop(url)


@pytest.fixture
def pg_db_url(pg_templates: PgTemplates) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database only (for PostgreSQL-specific behaviour)."""
    url = pg_templates.new_database()
    yield url
    pg_templates.drop(url)


@pytest.fixture
def source_root(tmp_path: Path) -> Path:
    root = tmp_path / "sources"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"not really a video, but content to hash" * 100)
    (root / "other.mp4").write_bytes(b"another file with other content" * 100)
    return root


@pytest.fixture
def settings(tmp_path: Path, source_root: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        source_roots=[source_root],
        lease_seconds=30,
        heartbeat_seconds=0.2,
        poll_seconds=0.2,
        retry_base_seconds=0.0,
        retry_max_seconds=0.0,
    )


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def service(db: Database, settings: Settings) -> JobService:
    return JobService(db, settings)


@pytest.fixture
def claims(db: Database, settings: Settings) -> ClaimService:
    return ClaimService(db, settings)


@pytest.fixture
async def tenant(db: Database) -> TenantRef:
    async with db.transaction() as conn:
        ref, _ = await create_tenant(conn, "acme")
    return ref


@pytest.fixture
async def other_tenant(db: Database) -> TenantRef:
    async with db.transaction() as conn:
        ref, _ = await create_tenant(conn, "globex")
    return ref
