"""What the outbox rows cost the claim path: the worker's finish-and-claim statement under
pgbench as it is (one outbox row per job and per transition), with one row per claimed or
finished GROUP instead (the per-job facts in that row's payload, a JSON array), and without
outbox rows at all (a floor the design rules out). A proposal's measurement, not a change:
the statement itself lives in `jobs/pgsql.py`; the variants are rewritten from its text.

    .venv/bin/python -m bench.outbox_cost [--jobs 20000] [--clients 1,2] [--batch 20] [--rounds 3]

Fresh database per run (filled like `bench.claims`), `-M prepared`, variants and client
counts interleaved `--rounds` times; jobs/s median (min-max), and PostgreSQL CPU per job
(the server's backends for that database, from /proc, when it runs on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path
from typing import Any

from bench import pgbench
from bench.stats import load_average, rotated, spread

_INSERT = re.compile(
    r"(?P<name>done_event|event) AS \(INSERT INTO outbox \(event_id, tenant_id, job_id, job_key,"
    r" type, payload, created_at\) SELECT gen_random_uuid\(\)::text, (?P<src>recorded|claimed)"
    r"\.tenant_id, (?P=src)\.id, (?P=src)\.key, (?P<type>'[a-z.]+'|CASE WHEN [^,]*? END),"
    r" (?P<obj>jsonb_build_object"
    r"\(.*?\)), statement_timestamp\(\) FROM (?P=src) ORDER BY [^)]*? RETURNING id, event_id,"
    r" job_id\)",
    re.S,
)


def per_group(sql: str) -> str:
    """One outbox row per group: the jobs' facts aggregated into its payload; `job_id` is
    the group's first job (the per-job rows are looked up by the payload's ids)."""

    def one(m: re.Match[str]) -> str:
        src, obj = m.group("src"), m.group("obj")
        return (
            f"{m.group('name')} AS (INSERT INTO outbox (event_id, tenant_id, job_id, job_key,"
            f" type, payload, created_at) SELECT gen_random_uuid()::text, min({src}.tenant_id),"
            f" min({src}.id), min({src}.key), min({m.group('type')}) || '.group',"
            " jsonb_build_object("
            f"'jobs', jsonb_agg({obj})), statement_timestamp() FROM {src} HAVING count(*) > 0"
            " RETURNING id, event_id, job_id)"
        )

    out, n = _INSERT.subn(one, sql)
    assert n == 2, "the statement's outbox inserts changed shape: update bench.outbox_cost"
    return out


def no_rows(sql: str) -> str:
    def one(m: re.Match[str]) -> str:
        return (
            f"{m.group('name')} AS (SELECT 0::bigint AS id, ''::text AS event_id,"
            f" {m.group('src')}.id AS job_id FROM {m.group('src')})"
        )

    out, n = _INSERT.subn(one, sql)
    assert n == 2, "the statement's outbox inserts changed shape: update bench.outbox_cost"
    return out


def script(batch: int, variant: str) -> str:
    text = pgbench.script(batch)
    if variant == "per group":
        text = per_group(text)
        # The client carries what it claimed: every claimed job (no per-job event to join).
        text = text.replace("FROM claimed JOIN event ON event.job_id = claimed.id", "FROM claimed")
    elif variant == "none":
        text = no_rows(text)
    return text


def _backend_cpu(dbname: str) -> float | None:
    """CPU seconds of every local backend on `dbname` so far (None: not on this machine)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    found = False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if not cmdline.startswith("postgres:") or f" {dbname} " not in cmdline:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found = True
        total += (int(fields[11]) + int(fields[12])) / tick
    return total if found else None


async def one(server: str, variant: str, clients: int, n: int, batch: int) -> tuple[float, Any]:
    async with pgbench.filled_database(server, n, "vj_outbox") as db:
        cpu: dict[str, float | None] = {}

        async def sample() -> None:  # backends live only while pgbench runs: sample them
            while True:
                cpu["last"] = _backend_cpu(db.name) or cpu.get("last")
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        try:
            rate = await pgbench.run(
                db.host, db.port, db.user, db.name, n, clients, batch,
                text=script(batch, variant),
            )  # fmt: skip
        finally:
            sampler.cancel()
    last = cpu.get("last")
    return rate, None if last is None else last / n * 1e6


async def main(args: argparse.Namespace) -> None:
    variants = [(v, c) for c in args.clients for v in ("per job", "per group", "none")]
    got: dict[tuple[str, int], list[tuple[float, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v, c in rotated(variants, r):
            res = await one(args.pg, v, c, args.jobs, args.batch)
            got[(v, c)].append(res)
            print(f"  round {r + 1} {v:<9} {c} clients: {res[0]:.0f} jobs/s", flush=True)
    print(
        f"finish-and-claim statement under pgbench, groups of {args.batch}, {args.jobs} jobs per "
        f"run; outbox rows per job (as built), per group, none; {args.rounds} interleaved "
        f"rounds, median (min-max); {load_average()}"
    )
    print(f"{'outbox rows':<12} {'clients':>7} {'jobs/s':>24} {'PG CPU us/job (sampled)':>24}")
    for (v, c), runs in got.items():
        cpus = [x for _, x in runs if x is not None]
        cpu = spread(cpus) if cpus else "n/a"
        print(f"{v:<12} {c:>7} {spread([x for x, _ in runs]):>24} {cpu:>24}")


def cli() -> None:
    pgbench.run_main(pgbench.options(__doc__, clients=[1, 2], jobs=20000, batch=20), main)


if __name__ == "__main__":
    cli()
