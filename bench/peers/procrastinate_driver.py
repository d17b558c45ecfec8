"""procrastinate driver for `bench.claims` (runs in `.bench-venv`, never in the project venv).

    python bench/peers/procrastinate_driver.py setup DSN N
    python bench/peers/procrastinate_driver.py worker DSN --concurrency 10

A no-op task, the psycopg 3 connector (procrastinate's default), LISTEN/NOTIFY on, jobs
kept after success (procrastinate's default). procrastinate has no telemetry: its code
makes no outbound connections besides PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import procrastinate
from _protocol import ready_then_go, until_stdin_closes

app = procrastinate.App(connector=procrastinate.PsycopgConnector())


@app.task(name="noop", queue="bench")
async def noop() -> None:
    return None


def _connector(dsn: str) -> procrastinate.PsycopgConnector:
    # procrastinate's defaults for its pool; only the address is ours.
    return procrastinate.PsycopgConnector(conninfo=dsn)


async def setup(dsn: str, n: int) -> None:
    with app.replace_connector(_connector(dsn)) as a:
        async with a.open_async():
            await _setup(a, n)


async def _setup(a: procrastinate.App, n: int) -> None:
    await a.schema_manager.apply_schema_async()
    task = a.tasks["noop"]
    for start in range(0, n, 1000):
        await task.batch_defer_async(*[{} for _ in range(min(1000, n - start))])


async def worker(dsn: str, concurrency: int) -> None:
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    with app.replace_connector(_connector(dsn)) as a:
        async with a.open_async():
            await _work(a, concurrency)


async def _work(a: procrastinate.App, concurrency: int) -> None:
    await ready_then_go()
    stop = asyncio.Event()
    watcher = asyncio.create_task(until_stdin_closes(stop))
    run = asyncio.create_task(
        a.run_worker_async(
            queues=["bench"],
            concurrency=concurrency,
            wait=True,
            install_signal_handlers=False,
            listen_notify=True,
        )
    )
    await stop.wait()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(run, 30)
    watcher.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup", "worker"])
    parser.add_argument("dsn")
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    if args.command == "setup":
        asyncio.run(setup(args.dsn, args.n))
    else:
        asyncio.run(worker(args.dsn, args.concurrency))


if __name__ == "__main__":
    main()
