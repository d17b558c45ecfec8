"""Submit-to-claimed latency (p50/p99): `vidjobs up` itself, and on PostgreSQL through
Kafka, through the in-process bus and through the in-process signal sweep, in one run.

    .venv/bin/python -m bench.dispatch [--jobs 300] [--rate 50] [--rounds 3]
        [--kafka HOST:PORT] [--pg URL] [--paths embedded,signal-sweep,in-process-bus,kafka]

Jobs are submitted open-loop at `--rate` per second. Latency is the job's
`started_at - created_at`, both from the database clock: it covers the submit transaction's
commit, the relay's wake-up, publish and ack, the consumer's fetch, and the claim. The
bus-driven paths run with the database sweep off, so every claim comes from an event.
"embedded" is `vidjobs up` as it runs (`workers.compose.run_embedded`: SQLite, the API,
relay, in-process bus, bus-driven worker, ledger, reaper, webhooks in one process), fed
through its HTTP API. The paths run interleaved, `--rounds` times; the table gives the
median and the spread (min-max) over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.db import throwaway_database
from bench.stats import load_average, spread
from bench.submit import free_port, stop_process
from jobs.db import Database
from jobs.settings import CREDENTIALS, Settings
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


async def run_up(root: Path, jobs: int, rate: float) -> dict[str, Any]:
    """`vidjobs up` (SQLite, in-process bus) in a process of its own, as a user starts it,
    fed through its HTTP API at `rate`/s by this one (a client on the server's event loop
    delays the server's every step)."""
    import httpx

    data = root / f"up-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "VIDJOBS_DATA_DIR": str(data),
        "VIDJOBS_SOURCE_ROOTS": str(root),
        "VIDJOBS_SLEEP_SECONDS": "0.01",
    }
    env.pop("VIDJOBS_DATABASE_URL", None)
    env.pop("VIDJOBS_KAFKA_BOOTSTRAP", None)
    vidjobs = str(Path(sys.executable).with_name("vidjobs"))
    data.mkdir(parents=True)
    log = (data / "up.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        vidjobs, "up", "--port", str(free_port()), "--concurrency", "8", "--executor", "sleep",
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    db: Database | None = None
    try:
        creds = await _credentials(data / CREDENTIALS, proc, log.name)
        # The SQLite file `vidjobs up` made (not a VIDJOBS_DATABASE_URL of this environment).
        db = Database(Settings(data_dir=data, database_url=None).resolved_database_url)
        headers = {"Authorization": f"Bearer {creds['token']}"}
        async with httpx.AsyncClient(base_url=creds["url"], headers=headers, timeout=60) as client:

            async def submit(i: int) -> None:
                body = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": i}]}
                for _ in range(20):  # a busy server's 503/429 is retried, as a client does
                    r = await client.post("/v1/jobs", json=body)
                    if r.status_code not in (429, 503):
                        break
                    await asyncio.sleep(0.2)
                r.raise_for_status()

            await submit(0)  # warm-up (digest cache, connections)
            await asyncio.sleep(0.5)
            start = time.perf_counter()
            sent: list[asyncio.Task[None]] = []
            for i in range(1, jobs):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(asyncio.create_task(submit(i)))
            await asyncio.gather(*sent)
        deadline = time.perf_counter() + 60
        while len(values := await latencies(db)) < jobs and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        if db is not None:
            await db.dispose()
        await stop_process(proc)
        log.close()
    values = values[1:] if len(values) > 1 else values
    return {
        "path": "embedded",
        "claimed": len(values) + 1,
        "p50_ms": statistics.median(values),
        "p99_ms": percentile(values, 0.99),
    }


async def _credentials(path: Path, proc: asyncio.subprocess.Process, log: str) -> Any:
    """What `vidjobs up` writes once its API listens (the token and the URL)."""
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            creds = json.loads(path.read_text())
            if "url" in creds:
                return creds
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vidjobs up did not start; see {log}")
        await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="submissions per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", default="embedded,signal-sweep,in-process-bus,kafka")
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("VIDJOBS_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if not args.kafka and "kafka" in paths:
        paths.remove("kafka")
        print("kafka: skipped (set --kafka or VIDJOBS_TEST_KAFKA_BOOTSTRAP)")
    if not args.pg and set(paths) - {"embedded"}:
        raise SystemExit("needs PostgreSQL: --pg URL or VIDJOBS_TEST_DATABASE_URL (make services)")
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clip.mp4").write_bytes(os.urandom(64 * 1024))
        for r in range(args.rounds):
            for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
                if path == "embedded":
                    got = await run_up(root, args.jobs, args.rate)
                else:
                    got = await run_path(args.pg, root, path, args.kafka, args.jobs, args.rate)
                results[path].append(got)
                print(
                    f"  round {r + 1}/{args.rounds} {path}: p50 {got['p50_ms']:.1f} ms", flush=True
                )
    print(
        f"submit-to-claimed: {args.jobs} jobs at {args.rate:.0f}/s, open loop; embedded on "
        f"SQLite, the others on PostgreSQL; {args.rounds} interleaved rounds, median (min-max); "
        f"{load_average()}"
    )
    print(f"{'path':<16} {'p50 ms':>20} {'p99 ms':>20}")
    for path, runs in results.items():
        p50 = spread([x["p50_ms"] for x in runs], "{:.1f}")
        p99 = spread([x["p99_ms"] for x in runs], "{:.1f}")
        print(f"{path:<16} {p50:>20} {p99:>20}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    from workers import loop

    loop.run(main())  # the loop `vidjobs up` and `vidjobs worker` use
