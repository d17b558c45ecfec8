"""The ceiling: pgbench running the statement a busy vidjobs worker runs, no Python in the loop.

A busy worker's steady state is one statement per group of jobs: the fenced outcomes of
the group that just ran (here all successes), with their `job.succeeded` outbox rows, and
the claim of as many successors, with their `job.claimed` outbox rows
(`jobs.fenced.record_outcomes_and_claim_due` with a batch of successes). The pgbench
script is generated from that very SQL text, so it cannot drift from the code: each client
carries the ids and fencing tokens it claimed into its next transaction (pgbench variables,
`\\gset`), exactly as a worker carries its jobs. Prepared (`-M prepared`), on a fresh
database migrated and filled like `bench.claims`; one transaction = `batch` jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


def script(batch: int) -> str:
    """The pgbench script: the worker's finish-and-claim statement, variables for `$n`."""
    from jobs import pgsql

    sql = pgsql.RECORD_SUCCESSES_AND_CLAIM_DUE
    head = sql[: sql.index("SELECT false AS recorded")]
    for param, value in (
        ("$1", ":ids"),
        ("$2", ":tokens"),
        ("$3", ":outputs"),
        ("$4", "'pgbench'"),
        ("$5", "30.0"),
        ("$6", str(batch)),
    ):
        head = head.replace(param, value)
    # What the client keeps for its next transaction: the jobs it just claimed.
    tail = (
        "SELECT coalesce(array_agg(claimed.id), '{}')::text AS ids,"
        " coalesce(array_agg(claimed.fencing_token), '{}')::text AS tokens,"
        ' coalesce(array_agg(\'{"digest": "sha256:0", "size": 0}\'::text), \'{}\')::text'
        " AS outputs FROM claimed JOIN event ON event.job_id = claimed.id"
    )
    return " ".join((head + tail).split()) + "\n\\gset\n"


@dataclass
class Filled:
    """A throwaway database filled with `n` pending jobs, as pgbench connects to it."""

    name: str
    host: str
    port: int
    user: str


@asynccontextmanager
async def filled_database(server: str, n: int, prefix: str = "vj_ceiling") -> AsyncIterator[Filled]:
    """A fresh database migrated and filled like `bench.claims` (VACUUM ANALYZE and
    CHECKPOINT before the clock), dropped afterwards."""
    from bench.claims import vidjobs_setup
    from bench.db import admin, with_database

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server, name)
        await vidjobs_setup(url, n)
        await admin(url, "VACUUM ANALYZE")
        await admin(url, "CHECKPOINT")
        u = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))
        yield Filled(name, u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres")
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def ceiling(server: str, n: int, clients: int, batch: int) -> float:
    """Jobs per second with `clients` connections, each finishing and claiming `batch`."""
    async with filled_database(server, n) as db:
        return await run(db.host, db.port, db.user, db.name, n, clients, batch)


async def run(
    host: str,
    port: int,
    user: str,
    dbname: str,
    n: int,
    clients: int,
    batch: int,
    mode: str = "prepared",
    threads: int = 1,
    text: str | None = None,
) -> float:
    """pgbench the statement against `host:port` (PostgreSQL or a pooler in front of it):
    `clients` connections share `n` jobs, `batch` per transaction; jobs per second.
    `mode` is pgbench's -M: `extended` (unnamed statements) passes PgBouncer's
    transaction mode, where `prepared` statements would not survive a server change.
    `text`: another script in place of the statement's (a variant being measured)."""
    pgbench = find_pgbench()
    if pgbench is None:
        raise RuntimeError("pgbench not found (apt-get install postgresql-client)")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(text if text is not None else script(batch))
    try:
        # Each client's transactions claim n / clients jobs in all (the first one only
        # claims; the last batch stays claimed, as a worker's would at a stop).
        per_client = max(1, n // clients // batch)
        cmd = [
            pgbench, "-n", "-M", mode, "-h", host, "-p", str(port), "-U", user,
            "-c", str(clients), "-j", str(min(threads, clients)), "-t", str(per_client),
            "-D", "ids={}", "-D", "tokens={}", "-D", "outputs={}",
            "-f", f.name, dbname,
        ]  # fmt: skip
        out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
        match = re.search(r"tps = ([0-9.]+)", out.stdout)
        if out.returncode != 0 or match is None:
            raise RuntimeError(f"pgbench failed: {out.stderr[-1000:]}")
        return float(match.group(1)) * batch
    finally:
        Path(f.name).unlink(missing_ok=True)


def options(doc: str, *, clients: list[int], jobs: int, batch: int) -> argparse.ArgumentParser:
    """The options of a bench that runs the statement under pgbench: --pg, --clients (a
    comma-separated list), --jobs, --batch and --rounds; a bench adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--clients", type=lambda v: [int(x) for x in v.split(",")], default=clients)
    parser.add_argument("--jobs", type=int, default=jobs)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def run_main(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> None:
    """Parse the options and run `main` (PostgreSQL is required)."""
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("needs PostgreSQL: --pg URL or VIDJOBS_TEST_DATABASE_URL")
    asyncio.run(main(args))
