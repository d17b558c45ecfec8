"""Relay throughput: outbox rows published per second with every ack awaited, then marked.

    .venv/bin/python -m bench.relay [--rows 20000] [--kafka HOST:PORT] [--pg URL]

PostgreSQL comes from --pg or VIDJOBS_TEST_DATABASE_URL and Kafka from --kafka or
VIDJOBS_TEST_KAFKA_BOOTSTRAP (a throwaway database and topic are created and dropped).
For each batch size the same rows are published to Kafka (idempotent producer, acks=all)
and to the in-process bus in one run, so the Kafka/in-process ratio isolates the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.db import throwaway_database
from jobs.db import Database
from jobs.outbox import outbox
from jobs.settings import Settings
from workers.bus import Bus, InProcessBus, Message
from workers.relay import Relay

FILL = sa.text(
    """
    INSERT INTO outbox (event_id, tenant_id, job_id, job_key, type, payload, created_at)
    SELECT gen_random_uuid()::text, 'bench', i % :jobs,
           'v1-bench-' || lpad((i % :jobs)::text, 6, '0'), 'job.submitted',
           jsonb_build_object('key', 'v1-bench-' || lpad((i % :jobs)::text, 6, '0'),
                              'status', 'pending'),
           statement_timestamp()
    FROM generate_series(0, :rows - 1) AS i
    """
)


async def fill_outbox(db: Database, rows: int, jobs: int = 2000) -> None:
    """`rows` unpublished events spread over `jobs` job keys (the relay reads only these)."""
    async with db.transaction() as conn:
        await conn.execute(sa.delete(outbox))
        await conn.execute(FILL, {"rows": rows, "jobs": jobs})


async def publish_all(db: Database, bus: Bus, settings: Settings) -> float:
    """Seconds for one relay to publish and mark every row (leadership held throughout)."""
    relay = Relay(db, bus, settings)
    await bus.ensure_topic()
    assert await relay.leadership.try_acquire()
    try:
        await relay.publisher.start()
        relay._publisher_started = True
        # Warm up (metadata, partition leaders, connections) outside the timed part.
        await relay.publisher.publish([Message(f"warm-{i}", b"") for i in range(100)])
        started = time.perf_counter()
        await relay.publish_pending()
        took = time.perf_counter() - started
    finally:
        await relay.leadership.release()
        await relay.publisher.stop()
    return took


async def measure(
    url: str, kafka: str | None, rows: int, batches: list[int]
) -> list[dict[str, Any]]:
    db = Database(url)
    results = []
    for batch in batches:
        settings = Settings(data_dir=Path("/tmp"), relay_batch=batch)
        row: dict[str, Any] = {"batch": batch}
        await fill_outbox(db, rows)
        row["in_process_per_s"] = rows / await publish_all(db, InProcessBus("bench", 12), settings)
        if kafka:
            from tests.support.kafka import delete_topic
            from workers.bus.kafka import KafkaBus

            topic = f"vj-bench-{uuid.uuid4().hex[:8]}"
            await fill_outbox(db, rows)
            try:
                row["kafka_per_s"] = rows / await publish_all(
                    db, KafkaBus(kafka, topic, partitions=12), settings
                )
            finally:
                await delete_topic(kafka, topic)
        results.append(row)
    await db.dispose()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batches", default="100,500,2000")
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("VIDJOBS_TEST_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("needs PostgreSQL: --pg URL or VIDJOBS_TEST_DATABASE_URL (make services)")
    batches = [int(b) for b in args.batches.split(",")]
    async with throwaway_database(args.pg) as url:
        results = await measure(url, args.kafka, args.rows, batches)
    print(f"relay: {args.rows} outbox rows on PostgreSQL, published (acks awaited) and marked")
    print(f"{'batch':>6} {'in-process/s':>13} {'kafka/s':>9} {'kafka / in-process':>19}")
    for r in results:
        kafka = r.get("kafka_per_s")
        ratio = f"{kafka / r['in_process_per_s']:.2f}" if kafka else "-"
        print(f"{r['batch']:>6} {r['in_process_per_s']:>13.0f} {kafka or 0:>9.0f} {ratio:>19}")
    if not args.kafka:
        print("kafka: skipped (set --kafka or VIDJOBS_TEST_KAFKA_BOOTSTRAP)")


if __name__ == "__main__":
    asyncio.run(main())
