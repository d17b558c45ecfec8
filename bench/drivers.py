"""The driver choice: asyncpg vs psycopg 3 on the worker's own statement.

    .venv/bin/python -m bench.drivers [--jobs 20000] [--batch 20] [--pg URL]

Both drivers run the same finish-and-claim chain (`bench/peers/driver_loop.py`, from
`.bench-venv`, which has both) on a fresh database filled like `bench.claims`, with
prepared statements, autocommit and uvloop; no SQLAlchemy, no runner. What differs is the
driver's own cost per round trip and per row: jobs/s and the client's CPU per job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.claims import PEERS, ensure_bench_venv, vidjobs_setup
from bench.db import admin, plain_dsn, throwaway_database


async def measure(server: str, driver: str, n: int, batch: int, python: Path) -> dict[str, Any]:
    from jobs import statements

    sql = statements._FINISH_SUCCEEDED_MANY_IF_FENCED_AND_CLAIM_DUE_WITH_EVENTS
    async with throwaway_database(server, migrate=False) as url:
        await vidjobs_setup(url, n)  # migrates, then inserts n pending no-op jobs
        await admin(url, "VACUUM ANALYZE")
        await admin(url, "CHECKPOINT")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(sql)
        try:
            loop = [str(python), str(PEERS / "driver_loop.py"), driver, plain_dsn(url)]
            cmd = [*loop, f.name, str(n), str(batch)]
            out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
        finally:
            Path(f.name).unlink(missing_ok=True)
        if out.returncode != 0:
            raise RuntimeError(f"{driver}: {out.stderr[-1500:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("no PostgreSQL: pass --pg URL or set VIDJOBS_TEST_DATABASE_URL")
    python = await asyncio.to_thread(ensure_bench_venv)
    results = []
    for driver in ("asyncpg", "psycopg", "asyncpg", "psycopg"):  # interleaved, twice
        results.append(await measure(args.pg, driver, args.jobs, args.batch, python))
    print(f"driver choice: the worker's finish-and-claim chain, groups of {args.batch}, "
          f"{args.jobs} jobs, one connection")  # fmt: skip
    print(f"{'driver':<10} {'jobs/s':>8} {'client CPU us/job':>18}")
    for r in results:
        print(f"{r['driver']:<10} {r['jobs_per_s']:>8.0f} {r['client_cpu_us_per_job']:>18.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
