"""pgqueuer driver for `bench.claims` (runs in `.bench-venv`, never in the project venv).

    python bench/peers/pgqueuer_driver.py setup DSN N
    python bench/peers/pgqueuer_driver.py worker DSN --batch 10 --mode drain|continuous
    python bench/peers/pgqueuer_driver.py produce DSN N --batch 10

The two modes follow pgqueuer's own benchmark strategies: `drain` empties a pre-filled
queue and exits; `throughput` runs continuous workers while a producer enqueues in batches
of 10. No-op entrypoint, asyncpg driver, one connection per worker process. Nothing here
calls home: we do not use pgqueuer's `tools/benchmark.py` (it initialises Sentry with a
DSN at start-up), sentry_sdk is not installed in `.bench-venv`, and pgqueuer's own tracing
is off unless a tracer is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg
from _protocol import ready_then_go, until_stdin_closes
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode


async def enqueue(queries: Queries, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        size = min(batch, n - start)
        await queries.enqueue(["noop"] * size, [None] * size, [0] * size)


async def setup(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    await queries.install()
    await enqueue(queries, n, 1000)
    await conn.close()


async def worker(dsn: str, batch: int, mode: str, max_tasks: int | None) -> None:
    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    await ready_then_go()
    stop = asyncio.Event()
    watcher = asyncio.create_task(until_stdin_closes(stop))
    run = asyncio.create_task(
        pgq.run(
            batch_size=batch,
            mode=QueueExecutionMode(mode),
            max_concurrent_tasks=max_tasks,
            log_aggregation_interval=_zero(),
        )
    )
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    pgq.shutdown.set()
    await asyncio.wait_for(run, 30)
    watcher.cancel()
    await conn.close()


def _zero():
    from datetime import timedelta

    return timedelta(0)  # fold the log into statistics on demand only, as before 1.x timers


async def produce(dsn: str, n: int, batch: int) -> None:
    conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    await ready_then_go()
    await enqueue(queries, n, batch)
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup", "worker", "produce"])
    parser.add_argument("dsn")
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--mode", default="continuous", choices=["drain", "continuous"])
    parser.add_argument("--max-tasks", type=int, default=None, help="jobs in flight at most")
    args = parser.parse_args()
    if args.command == "setup":
        asyncio.run(setup(args.dsn, args.n))
    elif args.command == "worker":
        # As `pgq run` does (pgqueuer's CLI): on uvloop when it is installed (it is a
        # dependency of pgqueuer).
        run = asyncio.run
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            pass
        run(worker(args.dsn, args.batch, args.mode, args.max_tasks))
    else:
        asyncio.run(produce(args.dsn, args.n, args.batch))


if __name__ == "__main__":
    main()
