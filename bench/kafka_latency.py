"""One record's trip through Kafka, with vidjobs' client settings: the producer's ack and
produce-to-consumed, per producer linger and consumer fetch wait.

    .venv/bin/python -m bench.kafka_latency [--records 60] [--rounds 3] [--kafka HOST:PORT]

Idempotent producer with acks=all (as `workers.bus.kafka`), a read_committed consumer in
its own group; one record every 50 ms, each awaited before the next (a quiet system's
dispatch, not throughput). Variants interleaved, `--rounds` times; median (min-max) of
each run's p50.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stats import load_average, spread

VARIANTS = [(5, 500), (0, 500), (0, 20)]  # (linger_ms, fetch_max_wait_ms)


async def run(boot: str, linger: int, fetch_wait: int, n: int) -> tuple[float, float]:
    topic = f"vj-lat-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    producer = AIOKafkaProducer(
        bootstrap_servers=boot, enable_idempotence=True, acks="all", linger_ms=linger
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=boot,
        group_id=topic,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait,
    )
    await producer.start()
    await consumer.start()
    try:
        await asyncio.sleep(3)  # the group joined
        sent: dict[bytes, float] = {}
        trip: list[float] = []
        acks: list[float] = []

        async def consume() -> None:
            while len(trip) < n:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                now = time.perf_counter()
                trip.extend((now - sent[r.key]) * 1000 for rs in batches.values() for r in rs)

        task = asyncio.create_task(consume())
        for i in range(n):
            key = str(i).encode()
            sent[key] = time.perf_counter()
            await (await producer.send(topic, b"x", key=key))
            acks.append((time.perf_counter() - sent[key]) * 1000)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(task, 30)
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return statistics.median(acks), statistics.median(trip)


async def main(args: argparse.Namespace) -> None:
    got: dict[tuple[int, int], list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]:
            got[v].append(await run(args.kafka, *v, args.records))
    print(
        f"one record through Kafka on loopback, {args.records} per run, {args.rounds} "
        f"interleaved rounds, median (min-max) of the runs' p50; {load_average()}"
    )
    print(f"{'linger ms':>10} {'fetch wait ms':>14} {'ack p50 ms':>20} {'produce->consumed':>20}")
    for (linger, wait), runs in got.items():
        ack = spread([a for a, _ in runs], "{:.1f}")
        trip = spread([t for _, t in runs], "{:.1f}")
        print(f"{linger:>10} {wait:>14} {ack:>20} {trip:>20}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kafka", default=os.environ.get("VIDJOBS_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--records", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.kafka:
        raise SystemExit("needs Kafka: --kafka HOST:PORT or VIDJOBS_TEST_KAFKA_BOOTSTRAP")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
