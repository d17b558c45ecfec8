"""Webhook delivery: deliveries/s to a local receiver, and job success -> first attempt.

    .venv/bin/python -m bench.webhooks [--rounds 3] [--deliveries 2000] [--jobs 100]
        [--rates 10,25] [--pg URL] [--kafka HOST:PORT]

The receiver is a separate process (aiohttp on 127.0.0.1, answers 200 at once), so its CPU
is not the sender's. Both figures are read from the database:

- throughput: N owed deliveries inserted up front, then one `Sender` (the dispatcher's
  delivery loop) at concurrency 8, 32 and 128 sends them all; deliveries/s = N / wall time.
- latency: jobs submitted, claimed and succeeded open-loop at each of `--rates` per second
  (in the benchmark's own process, beside the dispatcher), each `job.succeeded` travelling
  outbox -> relay -> bus (in-process, and Kafka when given) -> dispatcher -> delivery row
  -> sender; latency = attempt 1's start minus the job's finished_at (the
  sender's and the database's clocks, one machine).

Variants run interleaved, `--rounds` times; the table gives the median and the spread
(min-max) over rounds, on a fresh database each run. 2 shared cores: the figures are this
machine's, the ratios between rows are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
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
from jobs.webhooks import statements as st
from jobs.webhooks.service import EndpointCreate, WebhookService
from workers.bus import Bus, InProcessBus
from workers.compose import Components
from workers.relay import Relay
from workers.webhooks.dispatcher import Dispatcher
from workers.webhooks.sender import Sender


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve_receiver(port: int) -> None:
    from aiohttp import web

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", ok)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.webhooks", "--serve-receiver", str(port)])
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/hook"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the receiver did not start")


def settings_for(url: str, root: Path, **kw: Any) -> Settings:
    return Settings(
        data_dir=root / uuid.uuid4().hex[:6],
        source_roots=[root],
        database_url=url,
        kafka_topic=f"vj-bench-wh-{uuid.uuid4().hex[:8]}",
        webhook_allow_http=True,
        webhook_allow_private=True,
        webhook_poll_seconds=1.0,
        relay_poll_seconds=1.0,
        heartbeat_seconds=5,
        **kw,
    )


async def components(settings: Settings, url: str) -> tuple[Components, Any, str]:
    blobs = LocalStorage(settings.data_dir / "blobs")
    blobs.ensure_scratch()
    c = Components(settings=settings, db=Database(url), blobs=blobs)
    async with c.db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "bench")
    return c, tenant, ""


async def throughput(
    server: str, root: Path, hook: str, n: int, concurrency: int
) -> tuple[float, float]:
    """(deliveries/s, sender CPU ms per delivery)."""
    async with throwaway_database(server) as url:
        settings = settings_for(url, root, webhook_concurrency=concurrency)
        c, tenant, _ = await components(settings, url)
        ep, _ = await WebhookService(c.db, settings).create(tenant, EndpointCreate(url=hook))
        body = {"type": "job.succeeded", "timestamp": "2026-12-01T00:00:00Z", "data": {"x": 1}}
        async with c.db.transaction() as conn:
            for start in range(0, n, 500):
                rows = [
                    {
                        "endpoint_id": ep.id,
                        "tenant_id": tenant.id,
                        "event_id": str(uuid.uuid4()),
                        "event_type": "job.succeeded",
                        "body": body,
                    }
                    for _ in range(start, min(n, start + 500))
                ]
                await st.insert_deliveries(conn, rows)
        sender = Sender(c.db, settings)
        stop = asyncio.Event()
        began, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(sender.run(stop))
        while True:
            async with c.db.engine.connect() as conn:
                owed, _ = await st.select_owed(conn)
            if owed == 0:
                break
            await asyncio.sleep(0.05)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        stop.set()
        await task
        await c.close()
        return n / elapsed, cpu * 1000 / n


async def latency(
    server: str, root: Path, hook: str, path: str, kafka: str | None, jobs: int, rate: float
) -> tuple[float, float]:
    async with throwaway_database(server) as url:
        settings = settings_for(url, root)
        c, tenant, _ = await components(settings, url)
        await WebhookService(c.db, settings).create(
            tenant, EndpointCreate(url=hook, events=["job.succeeded"])
        )
        bus: Bus
        if path == "kafka":
            from workers.bus.kafka import KafkaBus

            assert kafka
            bus = KafkaBus(kafka, settings.kafka_topic, partitions=12)
            await bus.ensure_topic()
        else:
            bus = InProcessBus(settings.kafka_topic, 12)
        loops = [
            Relay(c.db, bus, settings, wakeup=c.relay_wakeup),
            Dispatcher(c.db, bus, settings, group=f"{settings.kafka_topic}-wh"),
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
        await asyncio.sleep(3 if path == "kafka" else 0.5)

        async def one(i: int) -> None:
            edit = EditRequest.model_validate(
                {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": i}]}
            )
            job = (await c.service.submit(tenant, edit)).job
            claimed = await c.claims.claim_by_key(tenant.id, job.key, "bench")
            assert claimed is not None
            await c.claims.succeed(claimed, {})

        await one(0)  # warm-up: connections, digest cache
        began = time.perf_counter()
        running = []
        for i in range(1, jobs + 1):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            running.append(asyncio.create_task(one(i)))
        await asyncio.gather(*running)
        d, a = st.deliveries, st.attempts
        stmt = sa.select(jobs_table.c.finished_at, a.c.started_at).select_from(
            jobs_table.join(d, d.c.body["data"]["key"].as_string() == jobs_table.c.key).join(
                a, (a.c.delivery_id == d.c.id) & (a.c.attempt == 1)
            )
        )
        deadline = time.perf_counter() + 60
        while True:
            async with c.db.engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            if len(rows) >= jobs + 1 or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.close()
        if path == "kafka":
            from tests.support.kafka import delete_topic

            assert kafka
            await delete_topic(kafka, settings.kafka_topic)
        values = [(s - f).total_seconds() * 1000 for f, s in rows][1:]
        return statistics.median(values), percentile(values, 0.99)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


async def main(args: argparse.Namespace) -> None:
    paths = ["in-process-bus"] + (["kafka"] if args.kafka else [])
    rates: dict[int, list[tuple[float, float]]] = {c: [] for c in (8, 32, 128)}
    variants = [(p, rate) for rate in args.rates for p in paths]
    lat: dict[tuple[str, float], list[tuple[float, float]]] = {v: [] for v in variants}
    proc, hook = start_receiver()
    load = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "clip.mp4").write_bytes(os.urandom(64 * 1024))
            for r in range(args.rounds):
                for conc in rates:
                    rates[conc].append(await throughput(args.pg, root, hook, args.deliveries, conc))
                for path, rate in variants:
                    lat[(path, rate)].append(
                        await latency(args.pg, root, hook, path, args.kafka, args.jobs, rate)
                    )
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
                load = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(10)
    print(
        f"webhook deliveries to a local receiver: {args.deliveries} owed, PostgreSQL, "
        f"{args.rounds} interleaved rounds, median (min-max); load average {load:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print(f"{'sender concurrency':>20}  {'deliveries/s':>22}  {'sender CPU ms/delivery':>24}")
    for conc, pairs in rates.items():
        per_s = spread([r for r, _ in pairs])
        cpu = spread([c for _, c in pairs], "{:.2f}")
        print(f"{conc:>20}  {per_s:>22}  {cpu:>24}")
    print(
        f"job success -> first delivery attempt: {args.jobs} jobs per run, open loop, "
        "median (min-max) over rounds"
    )
    print(f"{'path':>16}  {'jobs/s':>6}  {'p50 ms':>20}  {'p99 ms':>20}")
    for (path, rate), pairs in lat.items():
        p50 = spread([p for p, _ in pairs], "{:.1f}")
        p99 = spread([q for _, q in pairs], "{:.1f}")
        print(f"{path:>16}  {rate:>6g}  {p50:>20}  {p99:>20}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[10.0, 25.0],
        help="jobs per second (comma separated)",
    )
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("VIDJOBS_TEST_KAFKA_BOOTSTRAP"))
    parser.add_argument("--serve-receiver", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return
    if not args.pg:
        raise SystemExit("needs PostgreSQL: --pg URL or VIDJOBS_TEST_DATABASE_URL")
    from workers import loop

    loop.run(main(args))


if __name__ == "__main__":
    cli()
