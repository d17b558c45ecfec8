"""Run the fleet under load and faults, then audit it.

    python -m harness --preset short --storage s3   # CI: every fault kind, ~3 minutes
    python -m harness --preset full --storage s3    # >= 10,000 jobs, >= 150 faults, ~35 min
    python -m harness --preset ffmpeg               # a smaller run with the real ffmpeg executor
    python -m harness --preset soak --storage s3    # 30 min steady load, no faults, resources
    python -m harness --share 0.5 --seconds 90 --seed 7 --report out.md

First the fleet's capacity is measured with no faults (`--capacity` skips that), then
`--share` of it is offered (`--jobs` instead fixes the count); the report gives
"load / capacity". Network, S3 and scratch faults go through toxiproxy (harness.netfaults);
the S3 and scratch kinds need `--storage s3`. `--faults` keeps only some kinds; `--broken`
runs workers that are broken on purpose (harness.broken), and then the audit must fail.
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
from typing import Any

import sqlalchemy as sa

from harness import netfaults
from harness.audit import blob_store, drained, run_audit
from harness.audit_effects import check_scratch, check_storage, check_webhooks, undelivered
from harness.audit_tasks import check_tasks
from harness.faults import PROCESS_KINDS, Fault, Injector, kinds_for, schedule
from harness.fleet import Fleet
from harness.load import FFMPEG_PROBE_FIRST, PROBE_FIRST, Load, LoadResult, measure_capacity
from harness.report import render, render_soak
from harness.sampler import Sampler
from harness.webhooks import ENV as WEBHOOK_ENV
from harness.webhooks import Receiver
from jobs.db import Database

PRESETS: dict[str, dict[str, Any]] = {
    "short": {"share": 0.5, "seconds": 100, "interval": 4.0, "executor": "sleep",
              "job_seconds": 0.2, "hold": 3.0, "probe_jobs": 300},
    "full": {"share": 0.6, "seconds": 1800, "interval": 3.4, "executor": "sleep",
             "job_seconds": 0.2, "hold": 3.0, "probe_jobs": 1500},
    # Real ffmpeg: the process faults and a worker partitioned from PostgreSQL mid-transcode.
    "ffmpeg": {"jobs": 40, "seconds": 60, "interval": 6.0, "executor": "ffmpeg",
               "job_seconds": 0.0, "hold": 3.0, "probe_jobs": 20,
               "faults": ",".join((*PROCESS_KINDS, "partition_worker_db"))},
    "soak": {"share": 0.5, "seconds": 1800, "interval": 0.0, "executor": "sleep",
             "job_seconds": 0.2, "hold": 3.0, "probe_jobs": 1500, "faults": "none",
             "sample_period": 15.0},
}
LEDGER_GROUP = "vidjobs-ledger"


async def succeeded(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT key FROM jobs WHERE status = 'succeeded' AND role <> 'task'")
        )
        return {r[0] for r in rows}


def make_clip(folder: Path) -> None:
    from workers.ffmpeg.testmedia import make_clip as clip

    clip(folder / "clip.mp4", seconds=4)


def fault_kinds(args: argparse.Namespace) -> tuple[str, ...]:
    available = kinds_for(args.storage)
    if not args.faults:
        return available
    if args.faults == "none":
        return ()
    chosen = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = [k for k in chosen if k not in available]
    if unknown:
        raise SystemExit(f"--faults: {unknown} not among {available} (storage {args.storage})")
    return chosen


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.out or tempfile.mkdtemp(prefix="vjh-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    netfaults.HOLD_SECONDS = args.hold
    fleet = Fleet(
        run_dir,
        workers=3,
        relays=2,
        executor=args.executor,
        sleep_seconds=args.job_seconds,
        lease_seconds=args.lease,
        storage=args.storage,
        wrapper=args.broken or "",
    )
    kinds = fault_kinds(args)
    faults: list[Fault] = (
        schedule(args.seed, args.seconds, args.interval, fleet.workers, kinds) if kinds else []
    )
    print(f"seed {args.seed}; load window {args.seconds:.0f} s; run dir {run_dir}", flush=True)
    for f in faults:
        target = f" (worker {f.target})" if f.kind in ("kill_worker", "zombie_worker", "partition_worker_db", "scratch_full") else ""
        print(f"  fault at {f.at:6.1f}s: {f.kind}{target}", flush=True)
    t0 = time.monotonic()
    db: Database | None = None
    receiver: Receiver | None = None
    try:
        fleet.start_services()
        make_clip(run_dir / "sources")
        receiver = Receiver(args.seed)
        await receiver.start()
        receiver.hook_url = fleet.proxy_webhooks(receiver.port)
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
                q = sa.text("SELECT count(*) FROM jobs WHERE status = 'succeeded' AND role <> 'task'")
                return int((await conn.execute(q)).scalar_one())

        async def db_stats() -> tuple[int, int]:
            assert db is not None
            async with db.engine.connect() as conn:
                size = (await conn.execute(sa.text("SELECT pg_database_size(current_database())"))).scalar_one()
            return int(size), await completions()

        probe = LoadResult()
        if args.capacity:
            capacity, capacity_note = args.capacity, "given (--capacity)"
        else:
            first = FFMPEG_PROBE_FIRST if args.executor == "ffmpeg" else PROBE_FIRST
            capacity, probe = await measure_capacity(
                fleet.api_url, token, args.probe_jobs, args.seed, completions, first
            )
            capacity_note = f"measured: {args.probe_jobs} unique jobs offered at once, no faults, 10th-90th percentile completions"
        jobs = args.jobs or max(1, round(args.share * capacity * args.seconds / 0.75))
        offered = round(jobs * 0.75) / args.seconds  # new jobs per second (the rest are duplicates)
        print(f"capacity {capacity:.1f} jobs/s ({capacity_note}); offering {offered:.1f} new jobs/s "
              f"= {offered / capacity:.2f} of it: {jobs} submissions", flush=True)

        injector = Injector(fleet, faults, completions, required=len(kinds))
        stop = asyncio.Event()
        start = time.monotonic()
        sampler = Sampler(fleet, db_stats, period=args.sample_period)
        sampling = asyncio.create_task(sampler.run(start, stop))
        load_over = asyncio.Event()
        inject = asyncio.create_task(injector.run(start, load_over))
        load = await Load(fleet.api_url, token, jobs, args.seconds, args.seed).run()
        load_done = time.monotonic()
        load_over.set()
        print(f"load done in {load_done - start:.0f} s: {len(load.answers)} answers", flush=True)
        await asyncio.wait_for(inject, args.seconds + 300)
        assert fleet.toxiproxy is not None
        fleet.toxiproxy.reset()  # nothing a fault did to the network outlives the run
        fleet.ensure_services()  # a restart that failed is retried, as an operator would
        for proc in fleet.procs:  # whatever a fault left down comes back, as under a supervisor
            if proc.stopped:
                fleet.resume(proc)
            if not proc.alive():
                fleet.start(proc)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            try:
                if await drained(db, load.accepted_keys | probe.accepted_keys, LEDGER_GROUP):
                    break
            except Exception as exc:  # the database may be restarting
                print(f"drain check failed: {exc}", flush=True)
            await asyncio.sleep(0.5)
        succeeded_keys = await succeeded(db)
        while time.monotonic() < deadline and (
            set(receiver.effects) != succeeded_keys or await undelivered(db, succeeded_keys)
        ):
            await asyncio.sleep(0.5)  # owed webhooks still being retried
        drain_done = time.monotonic()
        stop.set()
        await sampling
        audited = LoadResult(
            answers=probe.answers + load.answers,
            gave_up=probe.gave_up + load.gave_up,
            keys={**probe.keys, **load.keys},
        )
        blobs = blob_store(run_dir, fleet.env)
        try:
            audit = await run_audit(db, audited, blobs, LEDGER_GROUP)
        finally:
            await blobs.close()
        await check_webhooks(audit, db, receiver, succeeded_keys)
        await check_storage(audit, db, fleet.env, fleet.s3.get("VIDJOBS_TEST_S3_ENDPOINT"))
        await check_scratch(audit, fleet.scratch_dirs(), wait_seconds=15)
        worker_logs = sorted((run_dir / "logs").glob("worker-*.log"))
        await check_tasks(audit, db, audited.accepted_keys, worker_logs)
        audit.figures["capacity"] = capacity
        audit.figures["offered"] = offered
        # What the fleet was actually offered: new jobs over the time the load really took.
        audit.figures["achieved"] = len(load.accepted_keys) / max(1.0, load_done - start)
        config = {
            "seed": args.seed,
            "command": "python -m harness " + shlex.join(sys.argv[1:]),
            "capacity": f"{capacity:.1f} jobs/s ({capacity_note})",
            "lease": args.lease,
            "fleet": f"API 1, relays 2, workers 3 x {fleet.worker_concurrency} ({args.executor} executor"
            + (f", broken on purpose: {args.broken}" if args.broken else "")
            + "), reaper 1, ledger 1, webhooks 1 (receiver fails ~1/3 at random); "
            f"lease {args.lease:.0f} s; PostgreSQL 15 + Kafka 4.4 + toxiproxy on 127.0.0.1, "
            f"every process through its own proxies; storage {args.storage}"
            + (" (versitygw; every process on its own data dir; worker scratch on a "
               f"{fleet.scratch_mb} MiB tmpfs)" if args.storage == "s3" else ""),
        }
        timings = {
            "load": load_done - start,
            "drain": drain_done - load_done,
            "total": time.monotonic() - t0,
        }
        text = render(config, audited, faults, audit, timings)
        soak_ok = True
        if args.preset == "soak" or args.soak_report:
            soak_text, soak_ok = render_soak(sampler, warmup=args.seconds / 6, window=args.seconds / 6)
            text += "\n" + soak_text
        report = Path(args.report) if args.report else run_dir / "report.md"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text)
        print(text, flush=True)
        print(f"report: {report}", flush=True)
        return 0 if audit.passed and not load.gave_up and soak_ok else 1
    finally:
        fleet.stop_all()
        fleet.unmount_scratch()
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
    parser.add_argument("--jobs", type=int, help="submissions (default: from --share)")
    parser.add_argument("--share", type=float, help="share of the capacity to offer")
    parser.add_argument("--capacity", type=float, help="jobs/s: skip the capacity probe")
    parser.add_argument("--probe-jobs", type=int, default=300, help="jobs of the capacity probe")
    parser.add_argument("--faults", help="comma-separated kinds to inject (default: all; none)")
    parser.add_argument("--hold", type=float, help="seconds a network/storage fault lasts")
    parser.add_argument("--broken", choices=["fence", "drop"], help="self-test: broken workers")
    parser.add_argument("--sample-period", type=float, default=5.0, help="resource samples (s)")
    parser.add_argument("--soak-report", action="store_true", help="add the resource report")
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
    explicit = {a.dest for a in parser._actions if a.option_strings and any(o in sys.argv for o in a.option_strings)}
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None or name not in explicit:
            setattr(args, name, value)
    if args.hold is None:
        args.hold = 3.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(10**6)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
