"""A wake-up signal: set by whoever made work appear, awaited by idle loops.

Safe to set from another thread. Waiting has a timeout, which is the poll fallback: an
idle loop never spins and never sleeps longer than its poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        """Remember the running loop, so other threads can wake it."""
        self._loop = asyncio.get_running_loop()

    def notify(self) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._event.set)
        else:
            self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait until notified or `seconds` pass. True if notified."""
        # asyncio.timeout, not wait_for: wait_for runs the wait in a task of its own
        # (Python 3.11), one more loop turn between notify() and the waiter running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        notified = self._event.is_set()
        self._event.clear()
        return notified
