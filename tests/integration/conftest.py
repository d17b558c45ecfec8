"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jobs.settings import Settings
from jobs.storage import Storage
from tests.support.s3 import store_of_kind


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Storage]:
    """The same test body on the local store and on versitygw (a bucket per test)."""
    blobs, scratch = settings.data_dir / "blobs", settings.data_dir / "tmp"
    async with store_of_kind(request.param, blobs, scratch) as s:
        yield s
