"""The ceiling: pgbench running our own claim and finish statements, no Python in the loop.

`claim_finish.sql` is one job's life as the runner sends it (claim + outbox row, fenced
finish + outbox row, two transactions), prepared. Each run gets a fresh database migrated
by vidjobs and filled with the same no-op jobs as `bench.claims`; pgbench clients each run
jobs/clients transactions, so every job is claimed and finished exactly once.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "claim_finish.sql"


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


async def ceiling(server: str, n: int, clients: int) -> float:
    """Jobs per second (one pgbench transaction = one job) with `clients` connections."""
    from bench.claims import vidjobs_setup
    from bench.db import admin, with_database

    pgbench = find_pgbench()
    if pgbench is None:
        raise RuntimeError("pgbench not found (apt-get install postgresql-client)")
    name = f"vj_ceiling_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server, name)
        await vidjobs_setup(url, n)
        await admin(url, "VACUUM ANALYZE")
        await admin(url, "CHECKPOINT")
        u = urlparse(url.replace("postgresql+asyncpg://", "postgresql://"))
        cmd = [
            pgbench, "-n", "-M", "prepared", "-h", u.hostname or "127.0.0.1",
            "-p", str(u.port or 5432), "-U", u.username or "postgres",
            "-c", str(clients), "-j", "1", "-t", str(n // clients),
            "-f", str(SCRIPT), name,
        ]  # fmt: skip
        out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
        match = re.search(r"tps = ([0-9.]+)", out.stdout)
        if out.returncode != 0 or match is None:
            raise RuntimeError(f"pgbench failed: {out.stderr[-1000:]}")
        return float(match.group(1))
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
