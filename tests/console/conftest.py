"""Fixtures of the console's browser tests: a served console on a real PostgreSQL and
Debian's Chromium driven by Playwright (its own browser download is not reachable here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.settings import Settings
from tests.console.stack import Stack
from tests.support.databases import PgTemplates

CHROMIUM = os.environ.get("VIDJOBS_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@pytest.fixture(scope="module")
def stack(pg_templates: PgTemplates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = pg_templates.new_database()
    root = tmp_path_factory.mktemp("console")
    (root / "sources").mkdir()
    (root / "sources" / "clip.mp4").write_bytes(b"console test source bytes" * 100)
    settings = Settings(
        database_url=url, data_dir=root / "data", source_roots=[root / "sources"],
        lease_seconds=30, stream_poll_seconds=0.1,
    )
    s = Stack(settings).start()
    yield s
    s.stop()
    pg_templates.drop(url)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[object]:
    """Chromium, launched after the stack: Playwright's sync API keeps an event loop running
    in this thread, where the database fixtures' asyncio.run could not start one."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def shots() -> Path:
    """Where the test run writes its screenshots (committed: the README shows one)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
