"""The storage port under test: the local directory and a real S3-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs.storage import LocalStorage, Storage
from tests.support.s3 import store_of_kind


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The same test body runs on the local store and on versitygw (a bucket per test).

    Small multipart settings, so a few MiB already go up in parts."""
    async with store_of_kind(
        request.param,
        tmp_path / "blobs",
        tmp_path / "scratch",
        multipart_threshold=6 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    ) as store:
        if isinstance(store, LocalStorage):
            await store.ensure()
        yield store
