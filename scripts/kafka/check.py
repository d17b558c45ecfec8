#!/usr/bin/env python3
"""Prove a Kafka broker really works for aiokafka: create a topic, produce, consume, delete.

    python scripts/kafka/check.py 127.0.0.1:9092 [--timeout 60]

Exit 0 on success, 1 on failure, 4 when aiokafka is not importable (check skipped).
scripts/services.py runs it with the project's venv Python after starting the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
except ImportError:  # pragma: no cover - depends on the interpreter
    print("[kafka-check] aiokafka is not importable; skipping", file=sys.stderr)
    sys.exit(4)


async def round_trip(bootstrap: str) -> None:
    """One idempotent produce and one group consume on a fresh single-partition topic."""
    topic = f"vidjobs-selfcheck-{uuid.uuid4().hex[:12]}"
    payload = uuid.uuid4().bytes
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                    acks="all", request_timeout_ms=10_000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=b"selfcheck")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    group_id=f"{topic}-group", auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
            if message.value != payload:
                raise RuntimeError(f"consumed {message.value!r}, expected {payload!r}")
            await consumer.commit()
        finally:
            await consumer.stop()
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures surface as exceptions
    deadline = time.monotonic() + args.timeout
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            asyncio.run(asyncio.wait_for(round_trip(args.bootstrap), timeout=45))
        except Exception as exc:  # retried: a broker that just opened its port may not be ready
            if time.monotonic() > deadline:
                print(f"[kafka-check] FAILED after {attempt} attempts: {exc!r}", file=sys.stderr)
                return 1
            print(f"[kafka-check] attempt {attempt} not yet: {exc!r}", file=sys.stderr)
            time.sleep(1.0)
            continue
        took = time.monotonic() - started
        print(f"[kafka-check] produce/consume round trip ok ({took:.1f}s)", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
