"""Submissions per second through the service: unique keys vs duplicates, per database.

    .venv/bin/python -m bench.submit [--n 2000] [--concurrency 16] [--pg URL]

PostgreSQL comes from --pg or VIDJOBS_TEST_DATABASE_URL (a throwaway database is created
on that server and dropped afterwards); SQLite is a temp file. Both run in the same process
and the same run, so the ratios are comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.db import throwaway_database
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import create_tenant
from migrations import upgrade


async def measure(url: str, root: Path, n: int, concurrency: int) -> dict[str, float]:
    db = Database(url)
    await upgrade(db.engine)
    settings = Settings(data_dir=root / "data", source_roots=[root])
    service = JobService(db, settings)
    async with db.transaction() as conn:
        tenant, _ = await create_tenant(conn, f"bench{uuid.uuid4().hex[:6]}")
    requests = [
        EditRequest.model_validate(
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": i, "end": i + 1}],
            }
        )
        for i in range(n)
    ]
    # Warm up: connections, the digest cache, statement caches.
    for r in requests[:20]:
        await service.submit(tenant, r)

    async def run(reqs: list[EditRequest]) -> float:
        queue = list(reversed(reqs))

        async def worker() -> None:
            while queue:
                await service.submit(tenant, queue.pop())

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return len(reqs) / (time.perf_counter() - start)

    unique = await run(requests[20:])
    duplicate = await run(requests[20:])  # every key now exists
    await db.dispose()
    return {"unique_per_s": unique, "duplicate_per_s": duplicate}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"n": args.n, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clip.mp4").write_bytes(os.urandom(1024 * 1024))
        results["sqlite"] = await measure(
            f"sqlite+aiosqlite:///{root / 'bench.db'}", root, args.n, args.concurrency
        )
        if args.pg:
            async with throwaway_database(args.pg, migrate=False) as url:
                results["postgres"] = await measure(url, root, args.n, args.concurrency)
    print(f"submissions through the service: n={args.n}, concurrency={args.concurrency}")
    print(f"{'database':<10} {'unique/s':>10} {'duplicate/s':>12} {'dup cost / new cost':>20}")
    for name in ("sqlite", "postgres"):
        if name in results:
            r = results[name]
            ratio = r["unique_per_s"] / r["duplicate_per_s"]
            r["dup_cost_ratio"] = ratio
            print(
                f"{name:<10} {r['unique_per_s']:>10.0f} {r['duplicate_per_s']:>12.0f} {ratio:>20.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
