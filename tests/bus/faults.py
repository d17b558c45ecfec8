"""Fault injection for the bus: a process dying at a chosen point.

`Crash` is a BaseException: no loop in vidjobs handles it, exactly like a process that was
killed there. The wrappers work for both bus implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.bus import Bus, Consumer, Message, Publisher, Record


class Crash(BaseException):
    """The process died here."""


class CrashAfterAck:
    """A publisher whose process dies right after the broker acknowledged a batch."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.acked = 0

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.inner.publish(messages)
        self.acked += len(messages)
        raise Crash("relay killed after the ack, before marking the rows published")

    async def stop(self) -> None:
        await self.inner.stop()


class CrashBeforeCommit:
    """A consumer whose process dies when it commits past a record of one of `types`.

    Commits of other records (events this consumer ignores) go through, so the crash comes
    right after a real effect.
    """

    def __init__(self, inner: Consumer, types: frozenset[str]) -> None:
        self.inner = inner
        self.types = types

    async def start(self) -> None:
        await self.inner.start()

    async def fetch(self, wait: float, max_records: int) -> list[Record]:
        return await self.inner.fetch(wait, max_records)

    async def commit(self, records: Sequence[Record]) -> None:
        if any(r.headers.get("type") in self.types for r in records):
            raise Crash("consumer killed after its effect, before committing its offsets")
        await self.inner.commit(records)

    def pause(self) -> None:
        self.inner.pause()

    def resume(self) -> None:
        self.inner.resume()

    async def lag(self) -> int:
        return await self.inner.lag()

    async def stop(self) -> None:
        await self.inner.stop()


class CrashingConsumers:
    """A bus whose consumers die before committing past an event of `types`."""

    def __init__(self, inner: Bus, *types: str) -> None:
        self.inner = inner
        self.topic = inner.topic
        self.types = frozenset(types)

    async def ensure_topic(self) -> None:
        await self.inner.ensure_topic()

    def publisher(self) -> Publisher:
        return self.inner.publisher()

    def consumer(self, group: str) -> Consumer:
        return CrashBeforeCommit(self.inner.consumer(group), self.types)
