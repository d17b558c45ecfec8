"""Database URLs in the forms platforms hand out, and bad settings, as `vidjobs` sees them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobs.settings import Settings


def vidjobs(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")} | env
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_urls_migrate_with_asyncpg(pg_db_url: str, scheme: str) -> None:
    plain = pg_db_url.replace("postgresql+asyncpg://", f"{scheme}://") + "?sslmode=disable"
    r = vidjobs("migrate", VIDJOBS_DATABASE_URL=plain)
    assert r.returncode == 0, r.stderr
    assert "database at head" in r.stdout


def test_url_forms_map_to_the_async_drivers() -> None:
    assert Settings(database_url="postgres://u:p@h:5/db?sslmode=require&x=1").database_url == "postgresql+asyncpg://u:p@h:5/db?ssl=require&x=1"
    assert Settings(database_url="sqlite:////tmp/v.db").database_url == "sqlite+aiosqlite:////tmp/v.db"
    assert Settings(database_url="postgresql+asyncpg://h/db").database_url == "postgresql+asyncpg://h/db"


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    r = vidjobs("migrate", VIDJOBS_DATABASE_URL="mysql://h/db", VIDJOBS_LEASE_SECONDS="-1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in r.stderr
    assert lines[0].startswith("VIDJOBS_DATABASE_URL='mysql://h/db': scheme 'mysql' is not supported; use one of postgresql://")
    assert lines[1] == "VIDJOBS_LEASE_SECONDS='-1': Input should be greater than 0"


def test_version() -> None:
    r = vidjobs("--version")
    assert r.returncode == 0 and r.stdout.startswith("vidjobs ")
