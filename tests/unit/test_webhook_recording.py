"""A burst of webhook answers must not open a database connection each: the sender records
outcomes through a few transactions at once, so its pool stays small and flat over a soak
(it had crept from 10 to 20 connections in the 30-minute soak)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from jobs.settings import Settings
from workers.webhooks import http, sender
from workers.webhooks.sender import RECORDING_SLOTS, Sender


class CountingDb:
    """Stands in for `Database.transaction()`: counts how many are open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[object]:
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            yield object()
        finally:
            self.open -= 1


async def test_a_burst_of_answers_records_through_a_few_transactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded: list[int] = []

    async def post(*args: Any, **kwargs: Any) -> http.Outcome:
        return http.Outcome(status_code=204, error=None, retry_after=None, duration_ms=1)

    async def finish(conn: object, delivery_id: int, attempt: int, **kwargs: Any) -> bool:
        await asyncio.sleep(0.01)  # the round trips of a real record
        recorded.append(delivery_id)
        return True

    monkeypatch.setattr(http, "post", post)
    monkeypatch.setattr(sender.st, "finish_attempt_if_current", finish)
    db = CountingDb()
    s = Sender(db, Settings(webhook_concurrency=64))  # type: ignore[arg-type]
    endpoint = SimpleNamespace(
        url="http://127.0.0.1:9/hook",
        secret="whsec_" + "A" * 43 + "=",
        previous_secret=None,
        failing_since=None,
        id=1,
    )
    rows = [SimpleNamespace(id=n, attempts=0, body={"n": n}, event_id=f"e{n}") for n in range(64)]
    await asyncio.gather(*(s.attempt(row, endpoint) for row in rows))  # type: ignore[arg-type]
    assert sorted(recorded) == list(range(64))
    assert db.most == RECORDING_SLOTS
