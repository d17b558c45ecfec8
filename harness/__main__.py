"""Run the fleet under load and faults, then audit it.

    python -m harness --preset short        # CI: ~300 jobs, every fault kind, ~2-3 minutes
    python -m harness --preset full         # thousands of jobs, 10+ minutes
    python -m harness --preset ffmpeg       # a smaller run with the real ffmpeg executor
    python -m harness --jobs 500 --seconds 90 --seed 7 --report out.md

Exits 0 only when the audit passes. The seed fixes the fault schedule and the load's
duplicates; it is printed first so a run can be repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from harness.audit import blob_store, drained, run_audit
from harness.faults import Injector, schedule
from harness.fleet import Fleet
from harness.load import Load
from harness.report import render
from harness.webhooks import ENV as WEBHOOK_ENV
from harness.webhooks import Receiver
from jobs.db import Database

PRESETS = {
    "short": {"jobs": 300, "seconds": 60, "interval": 8.0, "executor": "sleep", "job_seconds": 0.2},
    "full": {
        "jobs": 3000,
        "seconds": 600,
        "interval": 10.0,
        "executor": "sleep",
        "job_seconds": 0.2,
    },
    "ffmpeg": {
        "jobs": 40,
        "seconds": 45,
        "interval": 6.0,
        "executor": "ffmpeg",
        "job_seconds": 0.0,
    },
}
LEDGER_GROUP = "vidjobs-ledger"


async def succeeded(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT key FROM jobs WHERE status = 'succeeded'"))
        return {r[0] for r in rows}


def make_clip(folder: Path) -> None:
    from workers.ffmpeg.testmedia import make_clip as clip

    clip(folder / "clip.mp4", seconds=4)


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="vjh-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(
        run_dir,
        workers=3,
        relays=2,
        executor=args.executor,
        sleep_seconds=args.job_seconds,
        lease_seconds=args.lease,
        storage=args.storage,
    )
    faults = schedule(args.seed, args.seconds, args.interval, fleet.workers)
    print(
        f"seed {args.seed}; {args.jobs} jobs over {args.seconds:.0f} s; run dir {run_dir}",
        flush=True,
    )
    for f in faults:
        print(
            f"  fault at {f.at:6.1f}s: {f.kind}"
            + (f" (worker {f.target})" if "worker" in f.kind else ""),
            flush=True,
        )
    t0 = time.monotonic()
    db: Database | None = None
    receiver: Receiver | None = None
    try:
        fleet.start_services()
        make_clip(run_dir / "sources")
        receiver = Receiver(args.seed)
        await receiver.start()
        fleet.configure(run_dir / "sources", webhook_env=WEBHOOK_ENV)
        fleet.vidjobs("migrate")
        token = fleet.vidjobs("tenant", "create", "harness")
        fleet.start_all()
        fleet.wait_api()
        await receiver.register(fleet.api_url, token)
        db = Database(fleet.database_url)

        async def completions() -> int:
            assert db is not None
            async with db.engine.connect() as conn:
                return int(
                    (
                        await conn.execute(
                            sa.text("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
                        )
                    ).scalar_one()
                )

        injector = Injector(fleet, faults, completions)
        stop = asyncio.Event()
        start = time.monotonic()
        inject = asyncio.create_task(injector.run(start, stop))
        load = await Load(fleet.api_url, token, args.jobs, args.seconds, args.seed).run()
        load_done = time.monotonic()
        print(f"load done in {load_done - start:.0f} s: {len(load.answers)} answers", flush=True)
        await asyncio.wait_for(inject, args.seconds + 120)
        for proc in fleet.procs:  # whatever a fault left down comes back, as under a supervisor
            if proc.stopped:
                fleet.resume(proc)
            if not proc.alive():
                fleet.start(proc)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            try:
                if await drained(db, load.accepted_keys, LEDGER_GROUP):
                    break
            except Exception as exc:  # the database may be restarting
                print(f"drain check failed: {exc}", flush=True)
            await asyncio.sleep(0.5)
        succeeded_keys = await succeeded(db)
        while time.monotonic() < deadline and set(receiver.effects) != succeeded_keys:
            await asyncio.sleep(0.5)  # owed webhooks still being retried
        drain_done = time.monotonic()
        blobs = blob_store(run_dir, fleet.env)
        try:
            audit = await run_audit(db, load, blobs, LEDGER_GROUP)
        finally:
            await blobs.close()
        doubled = sorted(k for k, n in receiver.effects.items() if n > 1)
        audit.check(
            "webhook receiver's effects = succeeded jobs, once each",
            set(receiver.effects) == succeeded_keys and not doubled and receiver.unverified == 0,
            f"{len(receiver.effects)} effects for {len(succeeded_keys)} succeeded jobs, "
            f"{len(doubled)} doubled, missing {len(succeeded_keys - set(receiver.effects))}; "
            f"receiver {receiver.summary()}",
        )
        config = {
            "seed": args.seed,
            "command": "python -m harness " + shlex.join(sys.argv[1:]),
            "fleet": f"API 1, relays 2, workers 3 x {fleet.worker_concurrency} ({args.executor} executor), reaper 1, ledger 1, webhooks 1 (receiver fails ~1/3 at random); "
            f"lease {args.lease:.0f} s; PostgreSQL 15 + Kafka 4.4 on 127.0.0.1; storage {args.storage}"
            + (" (versitygw; every process on its own data dir)" if args.storage == "s3" else ""),
        }
        timings = {
            "load": load_done - start,
            "drain": drain_done - load_done,
            "total": time.monotonic() - t0,
        }
        text = render(config, load, faults, audit, timings)
        report = Path(args.report) if args.report else run_dir / "report.md"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text)
        print(text, flush=True)
        print(f"report: {report}", flush=True)
        return 0 if audit.passed and not load.gave_up else 1
    finally:
        fleet.stop_all()
        if receiver is not None:
            await receiver.stop()
        if db is not None:
            await db.dispose()
        if not args.keep_services:
            fleet.stop_services()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="short")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--seconds", type=float, help="length of the load window")
    parser.add_argument("--interval", type=float, help="seconds between faults")
    parser.add_argument("--executor", choices=["sleep", "ffmpeg"])
    parser.add_argument("--job-seconds", type=float, help="how long the sleep executor takes")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--report", help="where to write the markdown report")
    parser.add_argument("--out", help="run directory (default: a new temp dir)")
    parser.add_argument("--keep-services", action="store_true")
    parser.add_argument(
        "--storage", choices=["local", "s3"], default="local",
        help="s3: blobs in a private versitygw bucket, no directory shared between processes",
    )
    args = parser.parse_args()
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(10**6)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
