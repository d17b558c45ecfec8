"""Chunked encoding's scaling: a 60 s 720p edit chunked over 1, 2 and 4 worker processes vs
the same edit in one pass, every worker pinned to one core with one encoder thread.

    .venv/bin/python -m bench.chunked [--rounds 3] [--seconds 60] [--chunk-seconds 6]
        [--workers 1,2,4] [--store local|s3] [--cache-ab] [--json F]

Each round submits the edit to a fresh SQLite database (the source an uploaded blob with its
stored probe, as the planner needs) and starts real `vidjobs worker` processes (concurrency
1), worker i under `taskset -c (i mod cores)` with `VIDJOBS_FFMPEG_ENCODER_THREADS=1`
(`-threads 1`: x264 runs one thread). Time: submission to the job's success, workers already
started. Each round first measures this machine's own parallel efficiency: one 6 s encode
alone against two at once, ffmpeg alone (`hardware_pair`). Configurations are interleaved
within each round, each round starting one further along (single, 1, 2, 4; 1, 2, 4, single;
...). Speed-up and efficiency are each round's own (the single pass of the same round
against the chunked run: this machine's speed drifts by a fifth from one minute to the
next), median and spread (min-max). On a machine of fewer
cores than workers, workers share cores (the table says how many there were).

`--store s3` keeps the blobs on the S3 server of VIDJOBS_TEST_S3_* (a bucket of its own,
deleted afterwards), as a fleet does: every task's input comes down from there. `--cache-ab`
adds, for each chunked worker count, the same run with the workers' input cache off
(`VIDJOBS_INPUT_CACHE_BYTES=0`: each task fetches and hashes the whole source again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ffmpeg

from bench.stats import load_average, rotated, spread
from bench.storage import new_bucket, s3_conf
from jobs import owners
from jobs.db import Database, insert_on_conflict
from jobs.models import Blob
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.storage.s3 import S3Storage
from jobs.tenants import create_tenant
from tests.support.s3 import drop_bucket
from workers.compose import migrate
from workers.ffmpeg.probe import probe_upload
from workers.ffmpeg.testmedia import make_clip

SINGLE = "single pass, 1 worker"
OUTPUT = {"container": "mp4", "video_codec": "h264", "crf": 23, "preset": "veryfast"}


def hardware_pair(source: Path, root: Path, reps: int = 3) -> float:
    """This machine's own parallel efficiency for the work: one 6 s x264 encode (the same
    settings, one thread, pinned) alone against two at once on two cores, as time alone /
    time of the pair, the median of `reps`. On a shared VM two encodes at once are often
    slower each than one alone: that ceiling applies to the chunked runs too."""

    def argv(core: int, at: int) -> list[str]:
        out = ffmpeg.input(str(source), ss=at).output(
            str(root / f"pair-{core}.mp4"), vframes=180, an=None, vcodec="libx264",
            preset="veryfast", crf=23, threads=1, f="mp4", loglevel="error",
        )  # fmt: skip
        return ["taskset", "-c", str(core), *out.overwrite_output().compile()]

    def wall(commands: list[list[str]]) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen(c, stdin=subprocess.DEVNULL) for c in commands]
        if any(p.wait() for p in procs):
            raise SystemExit("the pair encode failed")
        return time.perf_counter() - start

    cores = os.cpu_count() or 1
    ratios = [
        wall([argv(0, 12)]) / wall([argv(0, 12), argv(1 % cores, 30)]) for _ in range(reps)
    ]
    return statistics.median(ratios)


async def one_run(
    source: Path,
    workers: int,
    chunk: dict[str, Any],
    root: Path,
    *,
    s3: S3Storage | None = None,
    env: dict[str, str] | None = None,
) -> float:
    """One submission timed to its success. On `s3`'s bucket (a prefix of this run's own)
    when given, else on local storage; `env`: more of the workers' environment."""
    data = root / f"run-{workers}-{time.monotonic_ns()}"
    settings = Settings(data_dir=data, chunk_min_seconds=0)
    db = Database(settings.resolved_database_url)
    await migrate(db)
    store: LocalStorage | S3Storage = LocalStorage(data / "blobs")
    worker_env = {**(env or {})}
    if s3 is not None:
        conf = s3_conf()
        store = S3Storage(
            f"s3://{s3.bucket}/{data.name}", data / "tmp", endpoint_url=conf["endpoint_url"],
            access_key=conf["access_key"], secret_key=conf["secret_key"],
        )  # fmt: skip
        worker_env |= {
            "VIDJOBS_STORAGE_URL": f"s3://{s3.bucket}/{data.name}",
            "VIDJOBS_S3_ENDPOINT_URL": conf["endpoint_url"],
            "AWS_ACCESS_KEY_ID": conf["access_key"],
            "AWS_SECRET_ACCESS_KEY": conf["secret_key"],
            "AWS_REGION": "us-east-1",
        }
    store.ensure_scratch()
    copy = data / "upload.mp4"
    shutil.copyfile(source, copy)
    found = await asyncio.to_thread(probe_upload, copy)
    digest, size = await store.put_file(copy)
    async with db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "bench")
        await conn.execute(
            insert_on_conflict(conn, Blob.__table__)  # type: ignore[attr-defined]
            .on_conflict_do_nothing()
            .values(digest=digest, size=size, media_type="video/mp4", probe=found)
        )
        await owners.record_owner(conn, tenant.id, digest)
    env = {
        **os.environ,
        "VIDJOBS_DATA_DIR": str(data),
        "VIDJOBS_DATABASE_URL": settings.resolved_database_url,
        "VIDJOBS_FFMPEG_ENCODER_THREADS": "1",
        "VIDJOBS_POLL_SECONDS": "0.2",
        **worker_env,
    }
    cores = os.cpu_count() or 1
    procs = [
        subprocess.Popen(
            ["taskset", "-c", str(i % cores), sys.executable, "-m", "workers.cli", "worker",
             "--concurrency", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(max(1, workers))
    ]
    try:
        await asyncio.sleep(3)  # the workers are up and polling
        service = JobService(db, settings)
        req = EditRequest.model_validate(
            {"source": {"digest": digest}, "output": OUTPUT, "chunking": chunk}
        )
        start = time.perf_counter()
        job = (await service.submit(tenant, req)).job
        while True:
            job = await service.get(tenant, job.key)
            if job.status in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        took = time.perf_counter() - start
        if job.status != "succeeded":
            raise SystemExit(f"the bench job failed: {job.error_message}")
        return took
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await db.dispose()
        if store is not s3:
            await store.close()
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--chunk-seconds", type=float, default=6.0)
    parser.add_argument("--workers", default="1,2,4", help="chunked runs' worker counts")
    parser.add_argument("--store", choices=("local", "s3"), default="local")
    parser.add_argument("--cache-ab", action="store_true", help="also each with no input cache")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-chunked-") as tmp:
        asyncio.run(measure(args, Path(tmp)))


async def measure(args: argparse.Namespace, root: Path) -> None:
    chunk = {"mode": "on", "chunk_seconds": args.chunk_seconds}
    off = {"VIDJOBS_INPUT_CACHE_BYTES": "0"}
    configs: list[tuple[str, int, dict[str, Any], dict[str, str]]] = [(SINGLE, 1, {"mode": "off"}, {})]
    for n in (int(w) for w in args.workers.split(",")):
        name = f"chunked, {n} worker{'s' if n > 1 else ''}"
        configs.append((name, n, chunk, {}))
        if args.cache_ab:
            configs.append((f"{name}, input cache off", n, chunk, off))
    times: dict[str, list[float]] = {name: [] for name, _, _, _ in configs}
    pairs: list[float] = []
    source = make_clip(root / "source.mp4", seconds=args.seconds, size="1280x720", rate=30)
    s3 = await new_bucket(root / "s3-scratch") if args.store == "s3" else None
    try:
        for r in range(args.rounds):
            pairs.append(hardware_pair(source, root))
            for name, workers, mode, env in rotated(configs, r):
                times[name].append(await one_run(source, workers, mode, root, s3=s3, env=env))
    finally:
        if s3 is not None:
            await drop_bucket(s3)
    print(f"{args.seconds} s 1280x720 30 fps, x264 veryfast crf 23, chunks of "
          f"{args.chunk_seconds:g} s, {args.rounds} interleaved rounds, {args.store} storage; "
          f"{load_average()}")
    print("| configuration | wall s, median (min-max) | speed-up vs single pass | efficiency |")
    print("|---|---|---|---|")
    figures: dict[str, Any] = {}
    for name, workers, _, _ in configs:
        speedups = [a / b for a, b in zip(times[SINGLE], times[name], strict=True)]
        efficiency = [s / workers for s in speedups]
        print(f"| {name} | {spread(times[name], '{:.1f}')} | {spread(speedups, '{:.2f}')}x | "
              f"{spread(efficiency, '{:.2f}')} |")
        figures[name] = {
            "workers": workers, "seconds": times[name], "speedups": speedups,
            "efficiency": statistics.median(efficiency),
        }  # fmt: skip
    print(f"this machine, two x264 encodes at once (pinned, ffmpeg alone): "
          f"{spread(pairs, '{:.2f}')} of one alone each, per round")
    figures["hardware pair"] = {"efficiency": statistics.median(pairs), "rounds": pairs}
    if args.json:
        args.json.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
