"""The harness injects faults one at a time: a fault overdue after a long one waits until the
fleet has recovered from the one before, so each fault's recovery figure is its own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness.faults import Fault, Injector


class FakeFleet:
    def __init__(self, serving_after: float) -> None:
        self.serving_after = serving_after
        self.t0 = time.monotonic()

    def workers_serving(self) -> bool:
        return time.monotonic() - self.t0 >= self.serving_after


class Quick(Injector):
    async def _inject(self, fault: Fault) -> None:
        fault.note = "injected"


def run(faults: list[Fault], recovers_after: float, serving_after: float = 0.0) -> None:
    """A job completes `recovers_after` seconds after each fault began (none before)."""

    async def completions() -> int:
        now = time.monotonic()
        return sum(1 for f in faults if f.started and now - f.started >= recovers_after)

    async def main() -> None:
        fleet: Any = FakeFleet(serving_after)
        injector = Quick(fleet, faults, completions)
        await asyncio.wait_for(injector.run(time.monotonic(), asyncio.Event()), 10)
        await asyncio.wait_for(asyncio.gather(*injector.measuring), 10)

    asyncio.run(main())


def test_an_overdue_fault_waits_for_the_one_before_to_recover() -> None:
    faults = [Fault(at=0.0, kind="kill_worker", target=0), Fault(at=0.0, kind="restart_kafka", target=0)]
    run(faults, recovers_after=0.6)
    first, second = faults
    assert first.began is not None and second.began is not None
    assert first.recovered_after is not None and 0.55 <= first.recovered_after < 1.5
    assert second.began - first.began >= first.recovered_after - 0.05  # not back to back
    assert second.recovered_after is not None and second.recovered_after < 1.5  # its own


def test_a_fault_waits_until_every_worker_serves_again() -> None:
    faults = [Fault(at=0.0, kind="kill_worker", target=0), Fault(at=0.0, kind="kill_worker", target=1)]
    run(faults, recovers_after=0.05, serving_after=0.8)
    assert faults[1].began is not None and faults[1].began >= 0.75
    assert faults[0].waited >= 0.7  # the fleet was not serving yet
