"""Storage: bulk transfer through vidjobs' S3 adapter vs boto3, and per-job added time.

    VIDJOBS_TEST_S3_ENDPOINT=... VIDJOBS_TEST_S3_ACCESS_KEY=... VIDJOBS_TEST_S3_SECRET_KEY=... \\
        .venv/bin/python -m bench.storage [--mib 1024] [--rounds 5] [--jobs 30] [--job-mib 10]

(`python scripts/services.py s3-start` prints those exports for a private versitygw.)

1. A file of --mib random MiB goes up and comes down through `S3Storage.put_file` / `fetch`
   (vidjobs: hashing the file first, conditional multipart upload of 16 MiB parts four at a
   time re-hashed on the way; download verified while it streams) and through boto3's own
   `upload_file` / `download_file` (its default TransferConfig: 8 MiB parts, 10 threads) and
   obstore's `put_async` / `get_async` (Rust; its defaults: 12 parts in flight), to the same
   server in the same run; neither baseline hashes what it moves. Rounds are interleaved (each round runs every case, the
   order rotated), so drift hits all alike; median and min-max spread of MiB/s.
2. Per-job added time of S3 against local storage: one worker (SQLite, concurrency 1) runs
   --jobs jobs one after the other on a --job-mib blob source with an executor that copies its
   input to its output, so each job downloads and uploads --job-mib; local and S3 jobs
   alternate. Median (p10-p90) submit-to-succeeded seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.owners import record_owner
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage, Storage
from jobs.storage.s3 import S3Storage
from jobs.tenants import create_tenant
from migrations import upgrade
from tests.support.s3 import drop_bucket
from workers.executor import ExecutionContext, ExecutionResult
from workers.runner import Runner
from workers.wakeup import Wakeup

MiB = 1024 * 1024


def s3_conf() -> dict[str, str]:
    endpoint = os.environ.get("VIDJOBS_TEST_S3_ENDPOINT")
    if not endpoint:
        raise SystemExit("set VIDJOBS_TEST_S3_ENDPOINT (python scripts/services.py s3-start)")
    return {
        "endpoint_url": endpoint,
        "access_key": os.environ.get("VIDJOBS_TEST_S3_ACCESS_KEY", ""),
        "secret_key": os.environ.get("VIDJOBS_TEST_S3_SECRET_KEY", ""),
    }


async def new_bucket(scratch: Path) -> S3Storage:
    """An S3Storage on a fresh bucket of the bench server (`s3_conf`); `drop_bucket`
    (tests.support.s3) deletes it with everything in it."""
    store = S3Storage(f"s3://vjbench-{uuid.uuid4().hex[:12]}/blobs", scratch, **s3_conf())
    await store.create_bucket()
    return store


def random_file(path: Path, mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f}  ({min(values):.2f}-{max(values):.2f})"


async def transfer(args: argparse.Namespace, tmp: Path) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    conf = s3_conf()
    bucket = f"vjbench-{uuid.uuid4().hex[:12]}"
    store = S3Storage(
        f"s3://{bucket}/blobs", tmp / "scratch", **conf,
        part_size=args.part_mib * MiB, part_concurrency=args.part_concurrency,
    )
    await store.create_bucket()
    boto = boto3.client(
        "s3", endpoint_url=conf["endpoint_url"], aws_access_key_id=conf["access_key"],
        aws_secret_access_key=conf["secret_key"], region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    src = tmp / "big.bin"
    random_file(src, args.mib)
    size_mib = src.stat().st_size / MiB
    import obstore
    from obstore.store import S3Store

    obs = S3Store(
        bucket, endpoint=conf["endpoint_url"], access_key_id=conf["access_key"],
        secret_access_key=conf["secret_key"], region="us-east-1",
        client_options={"allow_http": True}, virtual_hosted_style_request=False,
    )
    rates: dict[str, list[float]] = {k: [] for k in (
        "vidjobs upload", "boto3 upload", "obstore upload",
        "vidjobs download", "boto3 download", "obstore download")}
    digest = ""

    async def vidjobs_up() -> float:
        nonlocal digest
        link = tmp / "up.link"
        os.link(src, link)  # put_file consumes its file: give it a link
        t = time.perf_counter()
        digest, _ = await store.put_file(link)
        return time.perf_counter() - t

    async def vidjobs_down() -> float:
        dest = tmp / "down.vidjobs"
        t = time.perf_counter()
        await store.fetch(digest, dest)
        elapsed = time.perf_counter() - t
        dest.unlink()
        return elapsed

    async def boto_up() -> float:
        t = time.perf_counter()
        await asyncio.to_thread(boto.upload_file, str(src), bucket, "bench/boto3", Config=TransferConfig())
        return time.perf_counter() - t

    async def boto_down() -> float:
        dest = tmp / "down.boto3"
        t = time.perf_counter()
        await asyncio.to_thread(boto.download_file, bucket, "bench/boto3", str(dest), Config=TransferConfig())
        elapsed = time.perf_counter() - t
        dest.unlink()
        return elapsed

    async def obs_up() -> float:
        t = time.perf_counter()
        await obstore.put_async(obs, "bench/obstore", src)
        return time.perf_counter() - t

    async def obs_down() -> float:
        dest = tmp / "down.obstore"
        t = time.perf_counter()
        got = await obstore.get_async(obs, "bench/obstore")
        with dest.open("wb") as f:
            async for chunk in got:
                f.write(chunk)
        elapsed = time.perf_counter() - t
        dest.unlink()
        return elapsed

    try:
        for r in range(args.rounds):
            pairs = [("vidjobs", vidjobs_up, vidjobs_down), ("boto3", boto_up, boto_down),
                     ("obstore", obs_up, obs_down)]
            pairs = pairs[r % 3:] + pairs[: r % 3]  # rotate the order each round
            for name, up, down in pairs:
                rates[f"{name} upload"].append(size_mib / await up())
                rates[f"{name} download"].append(size_mib / await down())
            await store.delete(digest)  # the next round's conditional write must write again
            boto.delete_object(Bucket=bucket, Key="bench/boto3")
            await obstore.delete_async(obs, "bench/obstore")
    finally:
        await store.abort_stale_uploads(-3600)
        c = await store.client()
        for key in ("bench/boto3", "bench/obstore", store.key(digest) if digest else None):
            if key:
                await c.delete_object(Bucket=bucket, Key=key)
        await c.delete_bucket(Bucket=bucket)
        await store.close()
    print(f"S3 transfer of a {size_mib:.0f} MiB file to versitygw on loopback, "
          f"{args.rounds} interleaved rounds; MiB/s median (min-max); vidjobs parts "
          f"{args.part_mib} MiB x {args.part_concurrency} in flight")
    for name, values in rates.items():
        print(f"  {name:<18} {spread(values)}")
    ratios: dict[str, list[float]] = {}
    for way in ("upload", "download"):
        for peer in ("boto3", "obstore"):  # each round's own ratio
            pairs = zip(rates[f"vidjobs {way}"], rates[f"{peer} {way}"], strict=True)
            ratios[f"vidjobs / {peer} {way}"] = [ours / theirs for ours, theirs in pairs]
    for name, values in ratios.items():
        print(f"  {name:<26} {spread(values)}  (each round's own ratio)")
    if args.json:
        args.json.write_text(json.dumps({
            "mib": size_mib, "rounds": args.rounds,
            "mib_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "ratios": {k: statistics.median(v) for k, v in ratios.items()},
        }, indent=2))  # fmt: skip


class CopyExecutor:
    """Copies its input to its output: a job that reads and writes --job-mib."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        out = ctx.workdir / "out.bin"
        await asyncio.to_thread(shutil.copyfile, ctx.inputs[0], out)
        with out.open("ab") as f:  # a different output per job (new digest, a real upload)
            f.write(ctx.job.key.encode())
        return ExecutionResult(path=out, media_type="application/octet-stream")


async def per_job(args: argparse.Namespace, tmp: Path) -> None:
    settings = Settings(data_dir=tmp / "data", poll_seconds=5)
    db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await upgrade(db.engine)
    s3 = await new_bucket(tmp / "s3-scratch")
    stores: dict[str, Storage] = {"local": LocalStorage(tmp / "blobs"), "s3": s3}
    src = tmp / "job-input.bin"
    random_file(src, args.job_mib)
    times: dict[str, list[float]] = {"local": [], "s3": []}
    try:
        for kind, store in stores.items():
            wakeup = Wakeup()
            service = JobService(db, settings, after_commit=lambda _e, w=wakeup: w.notify())
            async with db.transaction() as conn:
                tenant, _ = await create_tenant(conn, f"bench-{kind}")
            os.link(src, tmp / "in.link")
            digest, _ = await store.put_file(tmp / "in.link")
            async with db.transaction() as conn:
                await record_owner(conn, tenant.id, digest)
            runner = Runner(ClaimService(db, settings), CopyExecutor(), store, settings,
                            wakeup=wakeup, concurrency=1)
            stores[kind] = store
            times[kind] = []
            store._bench = service, tenant, digest, runner
        stops = {}
        tasks = []
        for kind, store in stores.items():
            service, tenant, digest, runner = store._bench  # type: ignore[attr-defined]
            stops[kind] = asyncio.Event()
            tasks.append(asyncio.create_task(runner.run(stops[kind])))
        for i in range(args.jobs):
            order = list(stores.items()) if i % 2 == 0 else list(reversed(stores.items()))
            for kind, store in order:
                service, tenant, digest, _ = store._bench  # type: ignore[attr-defined]
                req = EditRequest.model_validate({
                    "source": {"digest": digest},
                    "operations": [{"op": "trim", "start": i, "end": i + 1}],
                })
                t = time.perf_counter()
                key = (await service.submit(tenant, req)).job.key
                while (job := await service.get(tenant, key)).status not in ("succeeded", "failed"):
                    await asyncio.sleep(0.002)
                assert job.status == "succeeded", job.error_message
                times[kind].append(time.perf_counter() - t)
        for stop in stops.values():
            stop.set()
        await asyncio.gather(*tasks)
    finally:
        await drop_bucket(s3)
        await db.dispose()

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=10)[int(p * 10) - 1] if len(values) >= 10 else min(values)

    print(f"per job, {args.job_mib} MiB in and out (SQLite, 1 worker, {args.jobs} jobs each, alternating)")
    for kind, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"  {kind:<6} median {statistics.median(ms):7.1f} ms  (p10 {q(ms, 0.1):.1f} - p90 {q(ms, 0.9):.1f})")
    added = (statistics.median(times["s3"]) - statistics.median(times["local"])) * 1000
    print(f"  S3 adds {added:.1f} ms per job ({added / args.job_mib:.2f} ms per MiB moved each way)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--job-mib", type=int, default=10)
    parser.add_argument("--only", choices=["transfer", "per-job"])
    parser.add_argument("--part-mib", type=int, default=16, help="vidjobs' S3 part size")
    parser.add_argument("--part-concurrency", type=int, default=4, help="vidjobs' parts in flight")
    parser.add_argument("--json", type=Path, default=None, help="also write the transfer figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("VIDJOBS_BENCH_TMP")) as tmpdir:
        tmp = Path(tmpdir)
        if args.only != "per-job":
            await transfer(args, tmp)
        if args.only != "transfer":
            await per_job(args, tmp)


if __name__ == "__main__":
    asyncio.run(main())
