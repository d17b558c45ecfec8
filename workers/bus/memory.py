"""The in-process bus: the embedded mode's Kafka, with the same semantics in one process.

Partitions are append-only lists; a group's members share the partitions (partition p goes
to member p mod n, members in join order) and a member that gets a partition starts at
the group's committed offset, so uncommitted records are redelivered exactly as Kafka
would redeliver them. Messages live as long as the process; the database sweep covers
anything a restart drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from workers.bus.base import CommitFailed, Message, Record, commit_offsets


@dataclass
class _Group:
    members: list[InProcessConsumer] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    generation: int = 0


class InProcessBus:
    def __init__(self, topic: str = "vidjobs.job-events", partitions: int = 12) -> None:
        self.topic = topic
        self.partitions = partitions
        self._logs: list[list[Message]] = [[] for _ in range(partitions)]
        self._groups: dict[str, _Group] = {}

    async def ensure_topic(self) -> None:
        return None

    def publisher(self) -> InProcessPublisher:
        return InProcessPublisher(self)

    def consumer(self, group: str) -> InProcessConsumer:
        return InProcessConsumer(self, group)

    # --- used by the publisher and consumers -----------------------------------------------

    def partition_for(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.partitions

    def append(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._logs[self.partition_for(message.key)].append(message)
        for group in self._groups.values():
            for member in group.members:
                member.wake()

    def group(self, name: str) -> _Group:
        return self._groups.setdefault(name, _Group())

    def log(self, partition: int) -> list[Message]:
        return self._logs[partition]


class InProcessPublisher:
    def __init__(self, bus: InProcessBus) -> None:
        self.bus = bus
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def publish(self, messages: Sequence[Message]) -> None:
        if not self._started:
            raise RuntimeError("publisher not started: call start() first")
        self.bus.append(messages)

    async def stop(self) -> None:
        self._started = False


class InProcessConsumer:
    def __init__(self, bus: InProcessBus, group: str) -> None:
        self.bus = bus
        self.group_name = group
        self._positions: dict[int, int] = {}
        self._generation = -1
        self._paused = False
        self._data = asyncio.Event()
        self._joined = False

    async def start(self) -> None:
        group = self.bus.group(self.group_name)
        group.members.append(self)
        group.generation += 1
        self._joined = True

    def wake(self) -> None:
        self._data.set()

    def _assigned(self) -> list[int]:
        group = self.bus.group(self.group_name)
        index = group.members.index(self)
        size = len(group.members)
        return [p for p in range(self.bus.partitions) if p % size == index]

    def _sync(self) -> None:
        """After a membership change: keep owned positions, start new partitions at commit."""
        group = self.bus.group(self.group_name)
        if self._generation == group.generation:
            return
        assigned = self._assigned()
        self._positions = {p: self._positions.get(p, group.committed.get(p, 0)) for p in assigned}
        self._generation = group.generation

    def _take(self, max_records: int) -> list[Record]:
        records: list[Record] = []
        for partition, position in sorted(self._positions.items()):
            log = self.bus.log(partition)
            for offset in range(position, len(log)):
                if len(records) >= max_records:
                    return records
                m = log[offset]
                records.append(Record(partition, offset, m.key, m.value, dict(m.headers)))
                self._positions[partition] = offset + 1
        return records

    async def fetch(self, wait: float, max_records: int) -> list[Record]:
        if not self._joined:
            raise RuntimeError("consumer not started: call start() first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            self._sync()
            self._data.clear()
            if not self._paused and max_records > 0:
                records = self._take(max_records)
                if records:
                    return records
            left = deadline - loop.time()
            if left <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.wait(), left)

    async def commit(self, records: Sequence[Record]) -> None:
        group = self.bus.group(self.group_name)
        self._sync()
        for partition, offset in commit_offsets(records).items():
            if partition not in self._positions:
                raise CommitFailed(f"partition {partition} now belongs to another member")
            group.committed[partition] = max(group.committed.get(partition, 0), offset)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._data.set()

    async def lag(self) -> int:
        self._sync()
        return sum(len(self.bus.log(p)) - pos for p, pos in self._positions.items())

    async def stop(self) -> None:
        if not self._joined:
            return
        group = self.bus.group(self.group_name)
        group.members.remove(self)
        group.generation += 1
        self._joined = False
        for member in group.members:
            member.wake()
