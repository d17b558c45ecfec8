"""Claim-and-complete throughput of no-op jobs: vidjobs vs pgqueuer vs procrastinate.

    .venv/bin/python -m bench.claims [--jobs 5000] [--procs 1,2,4] [--concurrency 20] [--rounds 3]

Every system gets the same job count, the same PostgreSQL server, a fresh database per
run and the same number of worker PROCESSES, each with the same cap of `--concurrency`
jobs in flight: vidjobs runner slots; pgqueuer `max_concurrent_tasks` (its batch size is
how many jobs one dequeue takes, and may be at most half the cap); procrastinate
concurrency. "pgqueuer drain, uncapped" runs pgqueuer as configured out of the box
(batch 10, no cap on jobs in flight), for reference. Workers start,
connect and report ready before the clock starts; the clock stops when the database
shows every job done (polled every 20 ms). Peers run from `.bench-venv` (created on first
use: `python3.11 -m venv` + pip install of pgqueuer, procrastinate, asyncpg, psycopg),
never from the project's venv.

vidjobs runs its real worker (`workers.runner.Runner` in the composition `vidjobs worker`
builds: metered claims, after-commit hooks): claims with a lease, a fencing token and an
outbox row per job, a heartbeat per job (a timer: no-op jobs end before it is due), a
fenced finish with its outbox row, and the successors' claim in the finishes' statement.
Its no-op job returns metadata only, like the peers' no-op function. The row
"vidjobs + blob" has each job store an empty output file as well (scratch dir, hash,
fsync, rename into the blob store on /dev/shm): what a job with an output adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from bench.db import admin, plain_dsn, with_database
from bench.stats import load_average, spread

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
BENCH_VENV = ROOT / ".bench-venv"
# Pinned, so that runs of different days compare: the versions of every full run so far.
PEER_VERSIONS = {"pgqueuer": "1.6.0", "procrastinate": "3.10.0", "asyncpg": "0.32.0",
                 "psycopg": "3.3.9"}  # fmt: skip
PEER_PACKAGES = [f"{p}{'[binary]' if p == 'psycopg' else ''}=={v}" for p, v in PEER_VERSIONS.items()]


def ensure_bench_venv() -> Path:
    """The peers' own environment: created once, kept apart from the project's venv."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print("creating .bench-venv for the peers (pgqueuer, procrastinate) ...", flush=True)
        subprocess.run(["python3.11", "-m", "venv", str(BENCH_VENV)], check=True)
        (BENCH_VENV / ".gitignore").write_text("*\n")
    probe = subprocess.run(
        [str(python), "-c", "import pgqueuer, procrastinate, asyncpg, psycopg"],
        capture_output=True,
    )
    if probe.returncode != 0 or peer_versions(python) != PEER_VERSIONS:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    # Nothing may phone home: pgqueuer's benchmark tool would report to Sentry if it
    # could import sentry_sdk (we never run that tool, and keep the SDK out regardless).
    has_sentry = subprocess.run([str(python), "-c", "import sentry_sdk"], capture_output=True)
    if has_sentry.returncode == 0:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "sentry-sdk"])
    return python


def peer_versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps({p: m.version(p) for p in ('pgqueuer', 'procrastinate', "
            "'asyncpg', 'psycopg')}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


# --- the systems ---------------------------------------------------------------------------


@dataclass
class System:
    name: str
    setup: Callable[[str, int], Awaitable[None]]  # fresh database url, job count
    workers: Callable[[str, int, int], list[list[str]]]  # url, processes, concurrency
    done_sql: str  # how many jobs have completed
    producer: Callable[[str, int], list[str]] | None = None  # enqueues while workers run


async def vidjobs_setup(url: str, n: int) -> None:
    import sqlalchemy as sa

    from jobs.db import Database
    from jobs.tenants import create_tenant
    from migrations import upgrade

    db = Database(url)
    await upgrade(db.engine)
    async with db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "bench")
        # The same rows `JobService.submit` writes, in one statement (setup is not timed).
        await conn.execute(
            sa.text(
                "INSERT INTO jobs (tenant_id, key, status, spec, labels, priority, attempts,"
                " max_attempts, run_after, fencing_token, cancel_requested, progress,"
                " created_at, updated_at)"
                " SELECT :tenant, 'v1:bench:' || lpad(i::text, 8, '0'), 'pending',"
                ' \'{"inputs": [], "operations": [{"op": "noop"}]}\'::jsonb, \'{}\'::jsonb,'
                " 0, 0, 3, now(), 0, false, 0.0, now(), now()"
                " FROM generate_series(1, :n) AS i"
            ),
            {"tenant": tenant.id, "n": n},
        )
    await db.dispose()


def vidjobs_workers(url: str, procs: int, concurrency: int) -> list[list[str]]:
    cmd = [sys.executable, "-m", "bench.claims", "--worker", url, "--concurrency", str(concurrency)]
    return [cmd for _ in range(procs)]


def vidjobs_blob_workers(url: str, procs: int, concurrency: int) -> list[list[str]]:
    return [[*cmd, "--blob"] for cmd in vidjobs_workers(url, procs, concurrency)]


def peer_system(python: Path, name: str, mode: str | None = None, capped: bool = True) -> System:
    driver = str(PEERS / f"{name}_driver.py")

    async def setup(url: str, n: int) -> None:
        prefill = 0 if mode == "continuous" else n
        await asyncio.to_thread(
            subprocess.run,
            [str(python), driver, "setup", plain_dsn(url), str(prefill)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def workers(url: str, procs: int, concurrency: int) -> list[list[str]]:
        if name == "pgqueuer" and capped:
            # pgqueuer's batch size is how many jobs one dequeue takes, not how many run at
            # once: its in-flight cap is max_concurrent_tasks, at least twice the batch.
            extra = ["--batch", str(max(1, concurrency // 2)), "--mode", mode or "drain"]
            extra += ["--max-tasks", str(concurrency)]
        elif name == "pgqueuer":
            extra = ["--batch", "10", "--mode", mode or "drain"]  # its defaults: no cap
        else:
            extra = ["--concurrency", str(concurrency)]
        return [[str(python), driver, "worker", plain_dsn(url), *extra] for _ in range(procs)]

    producer = None
    if mode == "continuous":

        def producer(url: str, n: int) -> list[str]:
            return [str(python), driver, "produce", plain_dsn(url), str(n), "--batch", "10"]

    done = {
        "pgqueuer": "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'",
        "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    }[name]
    label = {"drain": "pgqueuer drain", "continuous": "pgqueuer throughput"}.get(mode or "", name)
    if not capped:
        label += ", uncapped"
    return System(label, setup, workers, done, producer)


def systems(python: Path | None) -> list[System]:
    out = [
        System(
            "vidjobs",
            vidjobs_setup,
            vidjobs_workers,
            "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
        ),
        System(
            "vidjobs + blob",
            vidjobs_setup,
            vidjobs_blob_workers,
            "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
        ),
    ]
    if python is not None:
        out += [
            peer_system(python, "pgqueuer", "drain"),
            peer_system(python, "pgqueuer", "continuous"),
            peer_system(python, "pgqueuer", "drain", capped=False),
            peer_system(python, "procrastinate"),
        ]
    return out


# --- one measured run ------------------------------------------------------------------------


async def _spawn(cmd: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env=env,
    )


async def _await_ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if line.strip() != b"ready":
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode(errors="replace")[-2000:]
        raise RuntimeError(f"a worker did not start: {line!r}\n{err}")


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of these processes (Linux /proc); None when one of them has
    gone (a drain-mode peer exits when the queue is empty) or /proc is not there."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _backend_cpu(watch: Any) -> dict[int, float] | None:
    """CPU seconds so far of each backend on the benchmark's database (but ours)."""
    rows = await watch.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    out: dict[int, float] = {}
    for row in rows:
        cpu = _cpu_seconds([int(row["pid"])])
        if cpu is None:
            return None
        out[int(row["pid"])] = cpu
    return out


def _per_job_us(before: float | None, after: float | None, n: int) -> float | None:
    return None if before is None or after is None else (after - before) / n * 1e6


@dataclass
class Measured:
    jobs_per_s: float
    worker_cpu_us: float | None  # per job, the worker processes
    postgres_cpu_us: float | None  # per job, the database's backends serving them (local)


async def measure(server: str, system: System, n: int, procs: int, concurrency: int) -> Measured:
    """Jobs per second for one system at one process count, on a fresh database, and the
    CPU it cost per job on each side (workers; PostgreSQL backends, when local)."""
    import asyncpg

    name = f"vj_claims_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    procs_started: list[asyncio.subprocess.Process] = []
    try:
        await system.setup(url, n)
        await admin(url, "VACUUM ANALYZE")
        await admin(url, "CHECKPOINT")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SENTRY_DSN": ""}
        cmds = system.workers(url, procs, concurrency)
        if system.producer is not None:
            cmds.append(system.producer(url, n))
        procs_started = [await _spawn(cmd, env) for cmd in cmds]
        await asyncio.gather(*[_await_ready(p) for p in procs_started])
        watch = await asyncpg.connect(plain_dsn(url))
        try:
            workers = [p.pid for p in procs_started]
            backends_before = await _backend_cpu(watch)
            cpu_before = _cpu_seconds(workers)
            start = time.perf_counter()
            for p in procs_started:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                await p.stdin.drain()
            deadline = start + 600
            while True:
                done = await watch.fetchval(system.done_sql)
                if done >= n:
                    elapsed = time.perf_counter() - start
                    cpu_after = _cpu_seconds(workers)
                    backends_after = await _backend_cpu(watch)
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{system.name}: only {done}/{n} jobs done in 600 s")
                for p in procs_started:
                    if p.returncode not in (None, 0):
                        raise RuntimeError(f"{system.name}: a worker exited {p.returncode}")
                await asyncio.sleep(0.02)
        finally:
            await watch.close()
        postgres_us = None
        if backends_before is not None and backends_after is not None:
            if set(backends_before) <= set(backends_after):  # none ended: all accounted for
                spent = sum(t - backends_before.get(pid, 0.0) for pid, t in backends_after.items())
                postgres_us = spent / n * 1e6
        return Measured(n / elapsed, _per_job_us(cpu_before, cpu_after, n), postgres_us)
    finally:
        await _stop(procs_started)
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for p in procs:
        if p.returncode is None and p.stdin is not None:
            p.stdin.close()
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), 30)
        except TimeoutError:
            p.kill()
            await p.wait()


async def run_suite(
    server: str,
    n: int,
    proc_counts: list[int],
    concurrency: int,
    peers: bool = True,
    only: set[str] | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """`rounds` interleaved rounds: in each, every process count runs every system side by
    side (the systems' order rotated each round, so drift hits all alike). `jobs_per_s` and
    `cpu_us_per_job` hold the medians; `rounds` every round's own figures."""
    python = await asyncio.to_thread(ensure_bench_venv) if peers else None
    chosen = [s for s in systems(python) if not only or s.name in only]
    per_round: list[dict[str, Any]] = []
    for r in range(rounds):
        order = chosen[r % len(chosen) :] + chosen[: r % len(chosen)]
        one: dict[str, Any] = {"jobs_per_s": {}, "cpu_us_per_job": {}}
        for procs in proc_counts:
            for system in order:
                m = await measure(server, system, n, procs, concurrency)
                one["jobs_per_s"].setdefault(system.name, {})[str(procs)] = m.jobs_per_s
                one["cpu_us_per_job"].setdefault(system.name, {})[str(procs)] = {
                    "workers": m.worker_cpu_us,
                    "postgres": m.postgres_cpu_us,
                }
                print(
                    f"  round {r + 1}/{rounds} {system.name:<22} {procs} proc:"
                    f" {m.jobs_per_s:8.0f} jobs/s  (CPU per job, us: workers"
                    f" {_us(m.worker_cpu_us)}, PostgreSQL {_us(m.postgres_cpu_us)})",
                    flush=True,
                )
        one["load_average"] = os.getloadavg()[0]
        per_round.append(one)
    names = [s.name for s in chosen]
    procs_keys = [str(p) for p in proc_counts]
    return {
        "jobs": n,
        "concurrency_per_process": concurrency,
        "cores": os.cpu_count(),
        "peer_versions": peer_versions(python) if python else {},
        "rounds": per_round,
        "load": load_average(),
        "jobs_per_s": {
            name: {p: median([rd["jobs_per_s"][name][p] for rd in per_round]) for p in procs_keys}
            for name in names
        },
        "cpu_us_per_job": {
            name: {
                p: {
                    side: _median_or_none([rd["cpu_us_per_job"][name][p][side] for rd in per_round])
                    for side in ("workers", "postgres")
                }
                for p in procs_keys
            }
            for name in names
        },
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def ratios(results: dict[str, Any]) -> dict[str, list[float]]:
    """Each round's vidjobs / peer ratio, per process count and best vs best (the best
    process count of each, pgqueuer's best over its rows)."""
    out: dict[str, list[float]] = {}
    for rd in results["rounds"]:
        rates = rd["jobs_per_s"]
        ours = rates.get("vidjobs")
        if ours is None:
            continue
        for name, row in rates.items():
            if name.startswith("vidjobs"):
                continue
            for p in row:
                out.setdefault(f"vidjobs / {name}|{p}", []).append(ours[p] / row[p])
            out.setdefault(f"vidjobs / {name}|best", []).append(
                max(ours.values()) / max(row.values())
            )
        pgq = [row for name, row in rates.items() if name.startswith("pgqueuer")]
        if len(pgq) > 1:
            best = max(max(row.values()) for row in pgq)
            out.setdefault("vidjobs best / pgqueuer best (any row)|best", []).append(
                max(ours.values()) / best
            )
    return out


def table(results: dict[str, Any]) -> str:
    rounds = results.get("rounds") or [results]
    procs = list(next(iter(results["jobs_per_s"].values())).keys())
    width = 22 if len(rounds) > 1 else 10
    lines = [
        f"claim-and-complete, no-op jobs: {results['jobs']} jobs, "
        f"{results['concurrency_per_process']} in flight per process, jobs/s; "
        f"{len(rounds)} interleaved round(s), median (min-max); {results.get('load', '')}",
        f"{'system':<34}" + "".join(f"{p + ' proc':>{width}}" for p in procs),
    ]
    for name in results["jobs_per_s"]:
        cells = [spread([rd["jobs_per_s"][name][p] for rd in rounds]) for p in procs]
        lines.append(f"{name:<34}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append("CPU per job, us, workers + PostgreSQL backends (medians), by process count")
    for name, by_procs in results["cpu_us_per_job"].items():
        cells = "".join(
            f"{_us(by_procs[p]['workers']) + '+' + _us(by_procs[p]['postgres']):>{width}}"
            for p in procs
        )
        lines.append(f"{'  ' + name:<34}{cells}")
    if "rounds" in results:
        by_label: dict[str, dict[str, list[float]]] = {}
        for key, values in ratios(results).items():
            label, p = key.split("|")
            by_label.setdefault(label, {})[p] = values
        title = "ratios, each round's own, median (min-max)"
        lines.append(f"{title:<{34 + width * len(procs)}}{'best vs best':>{width}}")
        for label, cols in by_label.items():
            cells = "".join(
                f"{spread(cols[p], '{:.2f}') if p in cols else '':>{width}}" for p in procs
            )
            lines.append(f"{label:<34}{cells}{spread(cols['best'], '{:.2f}'):>{width}}")
    return "\n".join(lines)


# --- the vidjobs worker process -----------------------------------------------------------


async def vidjobs_worker(url: str, concurrency: int, blob: bool = False) -> None:
    sys.path.insert(0, str(PEERS))
    from _protocol import ready_then_go, until_stdin_closes

    from jobs.settings import Settings
    from workers import compose
    from workers.executor import ExecutionContext, ExecutionResult

    class NoopExecutor:
        """The peers' job: a function that returns nothing. `blob`: also store an empty file."""

        async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
            if not blob:
                return ExecutionResult(path=None, media_type=None)
            out = ctx.workdir / "out"
            out.write_bytes(b"")
            return ExecutionResult(path=out, media_type="application/octet-stream")

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    data = Path(tempfile.mkdtemp(prefix="vj-bench-", dir=shm))
    try:
        # The composition `vidjobs worker` runs: metered claims, after-commit hooks.
        c = compose.build(Settings(data_dir=data, database_url=url))
        runner = c.runner(NoopExecutor(), concurrency)
        async with c.db.transaction():
            pass  # connect before the clock starts
        await ready_then_go()
        stop = asyncio.Event()
        watcher = asyncio.create_task(until_stdin_closes(stop))
        await runner.run(stop)
        watcher.cancel()
        await c.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=20, help="cap on jobs in flight")
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--no-peers", action="store_true", help="measure vidjobs only")
    parser.add_argument(
        "--only", default=None, help="comma-separated system names, e.g. 'vidjobs,pgqueuer drain'"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--blob", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        await vidjobs_worker(args.worker, args.concurrency, args.blob)
        return
    if not args.pg:
        raise SystemExit("no PostgreSQL: pass --pg URL or set VIDJOBS_TEST_DATABASE_URL")
    procs = [int(p) for p in args.procs.split(",")]
    only = set(args.only.split(",")) if args.only else None
    results = await run_suite(
        args.pg, args.jobs, procs, args.concurrency, not args.no_peers, only, args.rounds
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    from workers import loop

    loop.run(main())  # the vidjobs worker runs on the loop `vidjobs worker` uses
