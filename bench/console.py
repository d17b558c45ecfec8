"""How long the console's jobs page takes with 100,000 jobs in PostgreSQL.

    VIDJOBS_TEST_DATABASE_URL=postgresql+asyncpg://... \\
        .venv/bin/python -m bench.console [--jobs 100000] [--rounds 15]

A throwaway database gets --jobs jobs (one large tenant with 70%, three others; mixed
statuses, labels and creation times over a week; inserted with generate_series, then
VACUUM ANALYZE). A real `vidjobs serve` process serves it; the bench signs in through
`POST /console/login` like a browser (a tenant and an operator) and times
`GET /console/jobs?...` end to end (query, template, HTTP) for each case, in interleaved
rounds (the case order rotates each round). Prints median and min-max per case, and the
PostgreSQL plan of each case's page query (which index it reads, rows it touched).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.db import admin, throwaway_database
from bench.storage_api import free_port
from jobs.console import queries
from jobs.console.auth import create_operator
from jobs.db import Database
from jobs.tenants import TenantRef, create_tenant

FILL = """
INSERT INTO jobs (tenant_id, key, status, spec, labels, priority, attempts, max_attempts,
                  run_after, fencing_token, cancel_requested, progress, output, error_code,
                  error_message, created_at, updated_at, started_at, finished_at, lease_owner)
SELECT t.tenant_id,
       'vj1_' || md5(g::text) || md5((g + 7)::text),
       s.status,
       '{"operations": [{"op": "trim", "start_ms": 0, "end_ms": 1000}]}'::jsonb,
       jsonb_build_object('team', (ARRAY['news', 'sport', 'film', 'ads'])[1 + g % 4]),
       g % 3, 1, 3, t.created, 1, false,
       CASE WHEN s.status = 'succeeded' THEN 1.0 ELSE 0.0 END,
       NULL,
       CASE WHEN s.status = 'failed' THEN 'ffmpeg_failed' END,
       CASE WHEN s.status = 'failed' THEN 'ffmpeg exited 1' END,
       t.created, t.created, t.created,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN t.created END,
       CASE WHEN s.status = 'running' THEN 'bench-worker-' || (g % 8) END
FROM generate_series(1, $1) AS g
CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 < 7 THEN $2 WHEN g % 10 < 8 THEN $3
                                WHEN g % 10 < 9 THEN $4 ELSE $5 END AS tenant_id,
                           now() - make_interval(secs => ($1 - g) * 604800.0 / $1) AS created) t
CROSS JOIN LATERAL (SELECT CASE WHEN g % 100 < 20 THEN 'pending' WHEN g % 100 < 22 THEN 'running'
                                WHEN g % 100 < 82 THEN 'succeeded' WHEN g % 100 < 97 THEN 'failed'
                                ELSE 'cancelled' END AS status) s
"""


async def seed(url: str, n: int) -> dict[str, Any]:
    import asyncpg

    db = Database(url)
    async with db.transaction() as conn:
        tenants: list[TenantRef] = []
        tokens: list[str] = []
        for name in ("big", "second", "third", "fourth"):
            t, token = await create_tenant(conn, f"bench-{name}")
            tenants.append(t)
            tokens.append(token)
        operator = await create_operator(conn, "bench-ops")
    await db.dispose()
    raw = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        started = time.perf_counter()
        await raw.execute(FILL, n, *[t.id for t in tenants])
        took = time.perf_counter() - started
    finally:
        await raw.close()
    await admin(url, "VACUUM ANALYZE jobs")
    return {"tenants": tenants, "tokens": tokens, "operator": operator, "fill_s": took}


def cases(big: TenantRef, deep_before: int, key_prefix: str) -> dict[str, tuple[str, str]]:
    """name -> (who, query string)."""
    return {
        "baseline: GET /healthz (no page)": ("tenant", "HEALTHZ"),
        "tenant, newest page": ("tenant", ""),
        "tenant, status=failed": ("tenant", "status=failed"),
        "tenant, label team=film": ("tenant", "label=team%3Dfilm"),
        "tenant, created in a 1 h window": ("tenant", "since=WINDOW_FROM&until=WINDOW_TO"),
        "tenant, key prefix (4 hex)": ("tenant", f"key={key_prefix}"),
        "operator, key prefix (4 hex)": ("operator", f"key={key_prefix}"),
        "tenant, page ~1000 (keyset cursor)": ("tenant", f"before={deep_before}"),
        "operator, every tenant": ("operator", ""),
        "operator, one tenant + status=pending": ("operator", f"tenant={big.id}&status=pending"),
    }


async def plans(url: str, big: TenantRef, named: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Each case's page query: the index its plan reads and the rows it touched."""
    db = Database(url)
    out: dict[str, str] = {}
    try:
        async with db.reader.connect() as conn:
            for name, (who, query) in named.items():
                if query == "HEALTHZ":
                    continue
                params = dict(p.split("=", 1) for p in query.split("&") if p)
                params = {k: v.replace("%3D", "=") for k, v in params.items()}
                f = queries.parse_filter(params, operator=who == "operator")
                stmt = queries.page_statement(conn, big if who == "tenant" else None, f)
                # the statement as the page runs it (same binds), prefixed with EXPLAIN
                sync = conn.sync_connection
                assert sync is not None
                sa.event.listen(sync, "before_cursor_execute", _explain, retval=True)
                try:
                    plan = (await conn.execute(stmt)).scalar()
                finally:
                    sa.event.remove(sync, "before_cursor_execute", _explain)
                plan = json.loads(plan) if isinstance(plan, str) else plan
                out[name] = summarize(plan[0]["Plan"]) + f"; {plan[0]['Execution Time']:.2f} ms in PG"
    finally:
        await db.dispose()
    return out


def _explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> tuple[str, Any]:
    return "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters


def summarize(node: dict[str, Any]) -> str:
    parts = []
    stack = [node]
    while stack:
        n = stack.pop()
        if "Index Name" in n or n["Node Type"] == "Seq Scan":
            parts.append(f"{n['Node Type']} {n.get('Index Name', n.get('Relation Name'))}"
                         f" ({n.get('Actual Rows', '?')} rows, {n.get('Rows Removed by Filter', 0)} filtered)")
        stack.extend(n.get("Plans", []))
    return ", ".join(parts) or node["Node Type"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.pg:
        sys.exit("needs PostgreSQL: --pg or VIDJOBS_TEST_DATABASE_URL")
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    async with throwaway_database(args.pg) as url:
        seeded = await seed(url, args.jobs)
        big: TenantRef = seeded["tenants"][0]
        print(f"{args.jobs} jobs inserted in {seeded['fill_s']:.1f} s "
              f"(tenant bench-big holds 70%)")
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")}
            env |= {"VIDJOBS_DATABASE_URL": url, "VIDJOBS_DATA_DIR": str(Path(tmp) / "data"),
                    "VIDJOBS_RATE_LIMIT_PER_SECOND": "0"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "serve", "--port", str(port)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                await measure(args, url, seeded, big, f"http://127.0.0.1:{port}")
            finally:
                proc.terminate()
                proc.wait(20)


async def measure(args: argparse.Namespace, url: str, seeded: dict[str, Any], big: TenantRef,
                  base: str) -> None:
    clients = {}
    for who, token in (("tenant", seeded["tokens"][0]), ("operator", seeded["operator"])):
        client = httpx.AsyncClient(base_url=base, timeout=30)
        for _ in range(100):
            try:
                r = await client.post("/console/login", data={"token": token})
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert r.status_code == 303, r.text
        clients[who] = client
    # a cursor about 1000 pages deep into the big tenant, and a 1 h window three days ago
    first = await clients["tenant"].get("/console/jobs")
    assert first.status_code == 200
    ids = [int(x.split('"')[0]) for x in first.text.split('data-id="')[1:]]
    deep_before = ids[0] - 1000 * 50 * 10 // 7
    window_to = time.gmtime(time.time() - 3 * 86400)
    window_from = time.gmtime(time.time() - 3 * 86400 - 3600)
    named = cases(big, deep_before, "vj1_" + first.text.split("/console/jobs/" + big.id + "/vj1_")[1][:4])
    fmt = "%Y-%m-%dT%H:%M"
    named = {k: (w, q.replace("WINDOW_FROM", time.strftime(fmt, window_from))
                  .replace("WINDOW_TO", time.strftime(fmt, window_to)))
             for k, (w, q) in named.items()}
    timings: dict[str, list[float]] = {k: [] for k in named}
    rows: dict[str, int] = {}
    order = list(named)
    for _ in range(3):  # warm-up: templates compiled, pool connections open
        for who, query in named.values():
            await clients[who].get("/healthz" if query == "HEALTHZ" else f"/console/jobs?{query}")
    for i in range(args.rounds):
        for name in order[i % len(order):] + order[: i % len(order)]:
            who, query = named[name]
            path = "/healthz" if query == "HEALTHZ" else f"/console/jobs?{query}"
            started = time.perf_counter()
            r = await clients[who].get(path)
            timings[name].append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, (name, r.status_code)
            rows[name] = r.text.count('data-id="')
    for client in clients.values():
        await client.aclose()
    print(f"\nGET /console/jobs with {args.jobs} jobs, {args.rounds} interleaved rounds "
          "(ms, end to end over HTTP)")
    print(f"{'case':44} {'rows':>4} {'median':>8}  min-max")
    for name, values in timings.items():
        print(f"{name:44} {rows[name]:>4} {statistics.median(values):8.1f}  "
              f"{min(values):.1f}-{max(values):.1f}")
    print("\nPlans of the page queries (EXPLAIN ANALYZE):")
    for name, plan in (await plans(url, big, named)).items():
        print(f"- {name}: {plan}")


if __name__ == "__main__":
    main()
