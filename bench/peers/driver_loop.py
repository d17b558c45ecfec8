"""The worker's finish-and-claim chain on one connection, with asyncpg or psycopg.

    .bench-venv/bin/python bench/peers/driver_loop.py asyncpg|psycopg DSN SQL_FILE N BATCH

Run by `bench.drivers` from `.bench-venv` (which has both drivers). SQL_FILE holds the
statement from `jobs/statements.py` with `$n` parameters. Each round finishes the jobs the
last round claimed and claims up to BATCH more, exactly as a saturated worker's group does,
until N jobs are done; prints one JSON line: jobs/s and this process's CPU per job.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

OUTPUT = '{"digest": "sha256:0", "size": 0}'


async def run_asyncpg(dsn: str, sql: str, n: int, batch: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    stmt = await conn.prepare(sql)
    done, ids, tokens = 0, [], []
    while done < n:
        rows = await stmt.fetch(ids, tokens, [OUTPUT] * len(ids), "drv", 30.0, batch)
        done += sum(1 for r in rows if r["finished"])
        claimed = [r for r in rows if not r["finished"]]
        ids, tokens = [r["id"] for r in claimed], [r["fencing_token"] for r in claimed]
        if not rows:
            break
    await conn.close()
    return done


async def run_psycopg(dsn: str, sql: str, n: int, batch: int) -> int:
    import psycopg
    from psycopg.rows import dict_row

    named = re.sub(r"\$(\d)", r"%(p\1)s", sql)  # $4 appears twice: name the parameters
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        done, ids, tokens = 0, [], []
        async with conn.cursor(row_factory=dict_row) as cur:
            while done < n:
                params = {"p1": ids, "p2": tokens, "p3": [OUTPUT] * len(ids), "p4": "drv",
                          "p5": 30.0, "p6": batch}  # fmt: skip
                await cur.execute(named, params, prepare=True)
                rows = await cur.fetchall()
                done += sum(1 for r in rows if r["finished"])
                claimed = [r for r in rows if not r["finished"]]
                ids, tokens = [r["id"] for r in claimed], [r["fencing_token"] for r in claimed]
                if not rows:
                    break
    return done


def main() -> None:
    driver, dsn, sql_file, n, batch = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        *map(int, sys.argv[4:6]),
    )
    sql = open(sql_file).read()
    run = {"asyncpg": run_asyncpg, "psycopg": run_psycopg}[driver]
    start, cpu = time.perf_counter(), time.process_time()
    try:
        import uvloop

        done = uvloop.run(run(dsn, sql, n, batch))
    except ImportError:
        done = asyncio.run(run(dsn, sql, n, batch))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"driver": driver, "jobs": done, "jobs_per_s": done / elapsed,
                      "client_cpu_us_per_job": cpu / max(1, done) * 1e6}))  # fmt: skip


if __name__ == "__main__":
    main()
