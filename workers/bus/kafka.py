"""The Kafka bus (aiokafka): idempotent producer, read_committed consumers, manual commits.

The producer runs with `enable_idempotence=True` and `acks="all"`, so a retried send is
not written twice by the broker and every acknowledged message is on all in-sync
replicas. A publish returns only when every message of the batch is acknowledged. After a
fatal producer error (or a run of failures) the next publish builds a new producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
)

from workers.bus.base import BusError, CommitFailed, Message, Record, commit_offsets

log = logging.getLogger("vidjobs.bus.kafka")
TOPIC_ALREADY_EXISTS = 36
REBUILD_AFTER_FAILURES = 3


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        topic: str = "vidjobs.job-events",
        *,
        partitions: int = 12,
        replication: int = 1,
        request_timeout: float = 15.0,
        session_timeout: float = 10.0,
        linger_ms: int = 0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.replication = replication
        self.request_timeout_ms = int(request_timeout * 1000)
        self.session_timeout_ms = int(session_timeout * 1000)
        # No linger: the relay sends a whole batch at once and awaits every ack, so waiting
        # for more records only delays the first. Measured on loopback (issue 18): linger 5
        # made a send's ack p50 10-13 ms, linger 0 3-4 ms. While a request is in flight
        # (idempotence allows one per partition leader) the next records still batch up.
        self.linger_ms = linger_ms

    async def ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=self.request_timeout_ms
        )
        try:
            await admin.start()
            await self._create_if_absent(admin)
        except KafkaError as exc:
            raise BusError(f"could not check or create topic {self.topic}: {exc!r}") from exc
        finally:
            await admin.close()

    async def _create_if_absent(self, admin: AIOKafkaAdminClient) -> None:
        if self.topic in await admin.list_topics():
            return
        new = NewTopic(self.topic, self.partitions, self.replication)
        response = await admin.create_topics([new])
        for name, code, *rest in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                detail = rest[0] if rest else ""
                raise BusError(f"could not create topic {name}: error {code} {detail}")
        log.info("created topic %s (%d partitions)", self.topic, self.partitions)

    def publisher(self) -> KafkaPublisher:
        return KafkaPublisher(self)

    def consumer(self, group: str) -> KafkaConsumer:
        return KafkaConsumer(self, group)


class KafkaPublisher:
    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self._producer: AIOKafkaProducer | None = None
        self._failures = 0
        self._broken = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bus.bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=self.bus.request_timeout_ms,
            linger_ms=self.bus.linger_ms,
        )

    async def start(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:  # e.g. the broker is down: close what start() opened
            await _close_quietly(producer.stop(), self.bus.request_timeout_ms)
            raise
        self._producer = producer
        self._broken = False

    async def _rebuild(self) -> None:
        log.warning("building a new Kafka producer after %d failed publishes", self._failures)
        await self.stop()
        await self.start()

    async def publish(self, messages: Sequence[Message]) -> None:
        if self._producer is None or self._broken:
            await self._rebuild()
        producer = self._producer
        assert producer is not None
        futures: list[asyncio.Future[Any]] = []
        try:
            for m in messages:
                headers = [(k, v.encode()) for k, v in m.headers.items()]
                futures.append(
                    await producer.send(
                        self.bus.topic, m.value, key=m.key.encode(), headers=headers
                    )
                )
            results = await asyncio.gather(*futures, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
        except KafkaError as exc:
            self._failed(exc, futures)
            raise BusError(f"publish failed: {exc!r}") from exc
        except Exception as exc:  # a producer in a bad state (closed, unexpected): rebuild it
            self._failed(exc, futures, fatal=True)
            raise BusError(f"publish failed: {exc!r}") from exc
        self._failures = 0

    def _failed(
        self, exc: Exception, futures: list[asyncio.Future[Any]], fatal: bool = False
    ) -> None:
        for f in futures:  # nobody else will look at these: retrieve their errors
            f.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._failures += 1
        retriable = bool(getattr(exc, "retriable", False))
        if fatal or not retriable or self._failures >= REBUILD_AFTER_FAILURES:
            self._broken = True

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.bus.request_timeout_ms / 1000)
            except Exception as exc:
                log.warning("Kafka producer did not stop cleanly: %r", exc)


class KafkaConsumer:
    def __init__(self, bus: KafkaBus, group: str) -> None:
        self.bus = bus
        self.group = group
        self._consumer = AIOKafkaConsumer(
            bus.topic,
            bootstrap_servers=bus.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=max(1000, bus.session_timeout_ms // 3),
            request_timeout_ms=max(bus.request_timeout_ms, bus.session_timeout_ms + 5000),
        )

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except BaseException:  # the caller retries with a new consumer: close this one
            await _close_quietly(self._consumer.stop(), self.bus.request_timeout_ms)
            raise

    async def fetch(self, wait: float, max_records: int) -> list[Record]:
        if max_records <= 0:
            await asyncio.sleep(wait)
            return []
        batches = await self._consumer.getmany(timeout_ms=int(wait * 1000), max_records=max_records)
        records = [
            Record(
                partition=tp.partition,
                offset=r.offset,
                key=(r.key or b"").decode(),
                value=r.value or b"",
                headers={k: v.decode() for k, v in (r.headers or ())},
            )
            for tp, rs in sorted(batches.items(), key=lambda kv: kv[0].partition)
            for r in rs
        ]
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        offsets = {TopicPartition(self.bus.topic, p): o for p, o in commit_offsets(records).items()}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalGenerationError, RebalanceInProgressError) as exc:
            raise CommitFailed(str(exc)) from exc
        except KafkaError as exc:
            raise BusError(f"commit failed: {exc!r}") from exc

    def pause(self) -> None:
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(*assigned)

    def resume(self) -> None:
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)

    async def lag(self) -> int:
        total = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except KafkaError:
                continue
            total += max(0, high - position)
        return total

    async def stop(self) -> None:
        try:
            await self._consumer.stop()
        except Exception as exc:
            log.warning("Kafka consumer did not stop cleanly: %r", exc)


async def _close_quietly(stopping: Any, timeout_ms: int) -> None:
    """Stop a client whose start failed; its own error is the one that matters."""
    try:
        await asyncio.wait_for(stopping, timeout_ms / 1000)
    except Exception as exc:
        log.debug("closing a Kafka client that did not start: %r", exc)
