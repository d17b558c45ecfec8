"""Many workers' connections through PgBouncer (transaction mode) vs straight to PostgreSQL.

    .venv/bin/python -m bench.pgbouncer [--clients 20,100,400] [--pool 20] [--rounds 3]
        [--jobs 40000] [--batch 5]

What a fleet needs from PostgreSQL is claims/s across many connections. Each pgbench client
is one worker's statement loop: the worker's own finish-and-claim statement
(`bench.pgbench.script`, generated from the code), carrying what it claimed into its next
transaction, `--batch` jobs per statement (a fleet's worker claims small groups). Run
straight to PostgreSQL (up to what its `max_connections` allows) and through a PgBouncer
(Debian's package, `apt-get install -y pgbouncer`) started here on loopback in transaction
mode with `--pool` server connections, so hundreds of clients share a few backends.
pgbench runs `-M extended` on both paths (unnamed statements: named prepared statements do
not survive PgBouncer 1.18's transaction mode). Fresh database per run; paths and client
counts interleaved, `--rounds` times; median (min-max).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import pgbench
from bench.stats import load_average, rotated, spread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_pgbouncer(host: str, port: int, user: str, pool: int, root: Path) -> tuple[Any, int]:
    """PgBouncer on loopback in transaction mode, every database forwarded to `host:port`."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise SystemExit("pgbouncer not found: apt-get install -y pgbouncer")
    listen = free_port()
    (root / "users.txt").write_text(f'"{user}" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\n"
        f"unix_socket_dir = {root}\n"
        "auth_type = any\n"
        f"auth_file = {root / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 2000\n"
        "server_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
        f"pidfile = {root / 'pgbouncer.pid'}\n"
    )
    cmd = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: as the unprivileged postgres user
        shutil.chown(root, "postgres")
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # its log file
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", listen)) == 0:
                return proc, listen
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"pgbouncer did not listen: {(root / 'pgbouncer.log').read_text()[-500:]}")


async def one(server: str, path: str, bouncer_port: int, clients: int, n: int, batch: int) -> float:
    async with pgbench.filled_database(server, n, "vj_bouncer") as db:
        host, port = db.host, db.port
        if path == "pgbouncer":
            host, port = "127.0.0.1", bouncer_port
        return await pgbench.run(host, port, db.user, db.name, n, clients, batch, "extended", 2)


async def main(args: argparse.Namespace) -> None:
    import asyncpg

    from bench.db import plain_dsn

    conn = await asyncpg.connect(plain_dsn(args.pg))
    try:
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        in_use = int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity"))
    finally:
        await conn.close()
    u = urlparse(args.pg.replace("postgresql+asyncpg://", "postgresql://"))
    # Straight to PostgreSQL only as many clients as it has room for (others share it).
    room = max_conn - in_use - 20
    variants = [("pgbouncer", c) for c in args.clients]
    variants += [("direct", c) for c in args.clients if c <= room]
    rates: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        proc, listen = start_pgbouncer(
            u.hostname or "127.0.0.1",
            u.port or 5432,
            u.username or "postgres",
            args.pool,
            Path(tmp),
        )
        try:
            for r in range(args.rounds):
                for path, clients in rotated(variants, r):
                    got = await one(args.pg, path, listen, clients, args.jobs, args.batch)
                    rates[(path, clients)].append(got)
                    print(f"  round {r + 1} {path} {clients} clients: {got:.0f} jobs/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        f"the worker's finish-and-claim statement, {args.batch} jobs per statement, {args.jobs} "
        f"jobs per run, pgbench -M extended; PgBouncer 1.18 transaction mode, {args.pool} "
        f"server connections; PostgreSQL max_connections {max_conn} ({in_use} in use by others "
        f"at the start); {args.rounds} interleaved rounds, median (min-max); {load_average()}"
    )
    print(f"{'path':<10} {'clients':>8} {'jobs/s':>24}")
    for (path, clients), values in sorted(rates.items()):
        print(f"{path:<10} {clients:>8} {spread(values):>24}")
    skipped = [c for c in args.clients if c > room]
    if skipped:
        print(f"direct with {skipped} clients: not run, more than PostgreSQL has room for ({room})")


def cli() -> None:
    parser = pgbench.options(__doc__, clients=[20, 100, 400], jobs=40000, batch=5)
    parser.add_argument("--pool", type=int, default=20, help="PgBouncer server connections")
    pgbench.run_main(parser, main)


if __name__ == "__main__":
    cli()
