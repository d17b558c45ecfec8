"""The bus port: what the relay, the runner and the ledger ask of a message bus.

Two implementations: `workers.bus.kafka` (Apache Kafka through aiokafka, the fleet) and
`workers.bus.memory` (in-process, the embedded mode and fast tests). Both have the same
semantics: one topic of ordered partitions, a message's partition chosen by its key,
consumer groups that share partitions and resume from their last committed offset, and
records that are redelivered until someone commits past them (at-least-once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """What a publisher sends: the key picks the partition (same key, same order)."""

    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What a consumer receives: a message and where it sits in the topic."""

    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


class BusError(Exception):
    """The bus could not do what was asked; the caller retries with a backoff."""


class CommitFailed(BusError):
    """An offset commit was refused (the partition moved to another group member).

    Nothing is lost: the records are redelivered to the new owner, whose dedup skips them.
    """


class Publisher(Protocol):
    async def start(self) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send the messages in order; return only when every one is acknowledged.

        Raises on any failure; the caller retries the whole batch (duplicates are fine,
        consumers deduplicate by event id).
        """

    async def stop(self) -> None: ...


class Consumer(Protocol):
    async def start(self) -> None: ...

    async def fetch(self, wait: float, max_records: int) -> list[Record]:
        """Up to `max_records` records, waiting up to `wait` seconds for the first one."""

    async def commit(self, records: Sequence[Record]) -> None:
        """Commit the position just after each partition's last record in `records`."""

    def pause(self) -> None:
        """Stop fetching from the assigned partitions (the group membership stays)."""

    def resume(self) -> None: ...

    async def lag(self) -> int:
        """Records in the assigned partitions not yet fetched by this consumer."""

    async def stop(self) -> None: ...


class Bus(Protocol):
    topic: str

    async def ensure_topic(self) -> None:
        """Create the topic if it does not exist yet."""

    def publisher(self) -> Publisher: ...

    def consumer(self, group: str) -> Consumer: ...


def commit_offsets(records: Sequence[Record]) -> dict[int, int]:
    """partition -> the offset to commit (one past the last record seen in it)."""
    offsets: dict[int, int] = {}
    for record in records:
        offsets[record.partition] = max(offsets.get(record.partition, 0), record.offset + 1)
    return offsets
