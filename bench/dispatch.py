"""Submit-to-claimed latency (p50/p99): through Kafka, through the in-process bus, and
through the embedded mode's in-process signal sweep, measured in one run.

    .venv/bin/python -m bench.dispatch [--jobs 500] [--rate 100] [--kafka HOST:PORT] [--pg URL]

Jobs are submitted open-loop at `--rate` per second on PostgreSQL. Latency is the job's
`started_at - created_at`, both from the database clock: it covers the submit transaction's
commit, the relay's wake-up, publish and ack, the consumer's fetch, and the claim. The
bus-driven paths run with the database sweep off, so every claim comes from an event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.db import throwaway_database
from jobs.db import Database
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.statements import jobs as jobs_table
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from workers.bus import Bus, InProcessBus
from workers.compose import Components
from workers.consumer import BusWorker
from workers.executor import SleepExecutor
from workers.relay import Relay
from workers.runner import Runner


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(db: Database) -> list[float]:
    stmt = sa.select(jobs_table.c.created_at, jobs_table.c.started_at)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [(s - c).total_seconds() * 1000 for c, s in rows if s is not None]


async def run_path(
    server: str, root: Path, path: str, kafka: str | None, jobs: int, rate: float
) -> dict[str, Any]:
    async with throwaway_database(server) as url:
        topic = f"vj-bench-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            data_dir=root / path,
            source_roots=[root],
            database_url=url,
            kafka_topic=topic,
            relay_poll_seconds=1.0,
            poll_seconds=1.0,
            heartbeat_seconds=5,
        )
        blobs = LocalStorage(settings.data_dir / "blobs")
        blobs.ensure_scratch()
        c = Components(settings=settings, db=Database(url), blobs=blobs)
        async with c.db.transaction() as conn:
            tenant, _ = await create_tenant(conn, "bench")
        runner = Runner(
            c.claims, SleepExecutor(0.01), blobs, settings, concurrency=64, wakeup=c.wakeup
        )
        loops: list[Any]
        bus: Bus | None = None
        if path == "signal-sweep":
            loops = [runner]
        else:
            if path == "kafka":
                from workers.bus.kafka import KafkaBus

                assert kafka
                bus = KafkaBus(kafka, topic, partitions=12)
                await bus.ensure_topic()  # before the consumer subscribes to it
            else:
                bus = InProcessBus(topic, 12)
            worker = BusWorker(runner, bus, f"{topic}-workers", sweep_seconds=3600)
            loops = [Relay(c.db, bus, settings, wakeup=c.relay_wakeup), worker]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
        await asyncio.sleep(3 if path == "kafka" else 0.5)  # group joined, relay leading
        requests = [
            EditRequest.model_validate(
                {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": i}]}
            )
            for i in range(jobs)
        ]
        await c.service.submit(tenant, requests[0])  # warm-up (digest cache, connections)
        start = time.perf_counter()
        for i, req in enumerate(requests[1:], 1):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await c.service.submit(tenant, req)
        deadline = time.perf_counter() + 60
        while len(values := await latencies(c.db)) < jobs and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.close()
        if bus is not None and path == "kafka":
            from tests.support.kafka import delete_topic

            assert kafka
            await delete_topic(kafka, topic)
        values = values[1:] if len(values) > 1 else values
        return {
            "path": path,
            "claimed": len(values) + 1,
            "p50_ms": statistics.median(values),
            "p99_ms": percentile(values, 0.99),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="submissions per second")
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("VIDJOBS_TEST_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("needs PostgreSQL: --pg URL or VIDJOBS_TEST_DATABASE_URL (make services)")
    paths = ["signal-sweep", "in-process-bus"] + (["kafka"] if args.kafka else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clip.mp4").write_bytes(os.urandom(64 * 1024))
        for path in paths:
            results.append(await run_path(args.pg, root, path, args.kafka, args.jobs, args.rate))
    base = results[0]["p50_ms"]
    print(f"submit-to-claimed on PostgreSQL: {args.jobs} jobs at {args.rate:.0f}/s, open loop")
    print(f"{'path':<16} {'claimed':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 / signal':>13}")
    for r in results:
        print(
            f"{r['path']:<16} {r['claimed']:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['p50_ms'] / base:>13.2f}"
        )
    if not args.kafka:
        print("kafka: skipped (set --kafka or VIDJOBS_TEST_KAFKA_BOOTSTRAP)")


if __name__ == "__main__":
    asyncio.run(main())
