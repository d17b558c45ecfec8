"""Large files through the vidjobs API on S3 storage, beside boto3 to the same server.

    VIDJOBS_TEST_S3_ENDPOINT=... (python scripts/services.py s3-start) \\
        .venv/bin/python -m bench.storage_api [--mib 1024] [--rounds 3]

A `vidjobs serve` process (SQLite, S3 storage on versitygw) and, per round, in rotating order:
`POST /v1/sources` of a --mib MiB video (a raw-video Matroska file ffmpeg makes; the API
receives it to scratch while hashing, probes it, stores it by digest with a conditional
multipart upload), boto3's `upload_file` of the same file, the job output's download by
the API's 307 to a presigned URL and by `?redirect=false` (streamed through the API), and
boto3's `download_file`. MiB/s, median (min-max). The stored source is deleted between
rounds so every upload writes it again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.storage import CopyExecutor, s3_conf, spread
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.settings import Settings
from jobs.storage.s3 import S3Storage
from workers.runner import Runner

MiB = 1024 * 1024


def make_video(path: Path, mib: int) -> None:
    from workers.ffmpeg import find_ffmpeg

    seconds = max(1, round(mib * MiB / (1280 * 720 * 1.5 * 25)))
    subprocess.run(
        [find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25",
         "-t", str(seconds), "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-f", "matroska", str(path)],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    conf = s3_conf()
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    with tempfile.TemporaryDirectory(dir=os.environ.get("VIDJOBS_BENCH_TMP")) as tmpdir:
        tmp = Path(tmpdir)
        video = tmp / "big.mkv"
        make_video(video, args.mib)
        size_mib = video.stat().st_size / MiB
        bucket = f"vjbench-{uuid.uuid4().hex[:12]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")}
        env |= {
            "VIDJOBS_DATA_DIR": str(tmp / "api"),
            "VIDJOBS_STORAGE_URL": f"s3://{bucket}/blobs",
            "VIDJOBS_S3_ENDPOINT_URL": conf["endpoint_url"],
            "VIDJOBS_RATE_LIMIT_PER_SECOND": "0",
            "AWS_ACCESS_KEY_ID": conf["access_key"],
            "AWS_SECRET_ACCESS_KEY": conf["secret_key"],
            "AWS_REGION": "us-east-1",
        }
        cli = [sys.executable, "-m", "workers.cli"]
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
        token = subprocess.run([*cli, "tenant", "create", "bench"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        port = free_port()
        api = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = S3Storage(f"s3://{bucket}/blobs", tmp / "bench-scratch", **conf)
        boto = boto3.client("s3", endpoint_url=conf["endpoint_url"],
                            aws_access_key_id=conf["access_key"],
                            aws_secret_access_key=conf["secret_key"], region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))
        auth = {"Authorization": f"Bearer {token}"}
        rates: dict[str, list[float]] = {k: [] for k in (
            "API upload (POST /v1/sources)", "boto3 upload",
            "API download (307, presigned)", "API download (redirect=false)", "boto3 download")}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
                for _ in range(100):
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                key = ""
                source = ""

                async def api_up() -> float:
                    nonlocal source

                    async def body():  # type: ignore[no-untyped-def]
                        with video.open("rb") as f:
                            while chunk := f.read(MiB):
                                yield chunk

                    t = time.perf_counter()
                    r = await http.post("/v1/sources", content=body(),
                                        headers={**auth, "Content-Type": "video/x-matroska"})
                    elapsed = time.perf_counter() - t
                    assert r.status_code == 201, r.text
                    source = r.json()["digest"]
                    return elapsed

                async def boto_up() -> float:
                    t = time.perf_counter()
                    await asyncio.to_thread(boto.upload_file, str(video), bucket, "bench/boto3",
                                            Config=TransferConfig())
                    return time.perf_counter() - t

                async def api_307() -> float:
                    dest = tmp / "down.307"
                    t = time.perf_counter()
                    async with httpx.AsyncClient(timeout=600, follow_redirects=True) as direct:
                        async with direct.stream("GET", f"http://127.0.0.1:{port}/v1/jobs/{key}/output", headers=auth) as r:
                            assert r.status_code == 200
                            with dest.open("wb") as f:
                                async for chunk in r.aiter_raw(MiB):
                                    f.write(chunk)
                    elapsed = time.perf_counter() - t
                    dest.unlink()
                    return elapsed

                async def api_stream() -> float:
                    dest = tmp / "down.api"
                    t = time.perf_counter()
                    async with http.stream("GET", f"/v1/jobs/{key}/output", params={"redirect": "false"}, headers=auth) as r:
                        assert r.status_code == 200
                        with dest.open("wb") as f:
                            async for chunk in r.aiter_raw(MiB):
                                f.write(chunk)
                    elapsed = time.perf_counter() - t
                    dest.unlink()
                    return elapsed

                async def boto_down() -> float:
                    dest = tmp / "down.boto3"
                    t = time.perf_counter()
                    await asyncio.to_thread(boto.download_file, bucket, "bench/boto3", str(dest),
                                            Config=TransferConfig())
                    elapsed = time.perf_counter() - t
                    dest.unlink()
                    return elapsed

                for r in range(args.rounds):
                    ups = [("API upload (POST /v1/sources)", api_up), ("boto3 upload", boto_up)]
                    for name, fn in ups if r % 2 == 0 else reversed(ups):
                        rates[name].append(size_mib / await fn())
                    if not key:  # one job whose output is a copy of the source: downloaded below
                        key = await make_output(http, auth, tmp, env, store, source)
                    downs = [("API download (307, presigned)", api_307),
                             ("API download (redirect=false)", api_stream), ("boto3 download", boto_down)]
                    order = downs[r % 3:] + downs[: r % 3]
                    for name, fn in order:
                        rates[name].append(size_mib / await fn())
                    await store.delete(source)  # the next upload stores it again
                    boto.delete_object(Bucket=bucket, Key="bench/boto3")
        finally:
            api.terminate()
            api.wait(30)
            c = await store.client()
            await store.abort_stale_uploads(-3600)
            while True:
                page = await c.list_objects_v2(Bucket=bucket)
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    await c.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                if not page.get("IsTruncated"):
                    break
            await c.delete_bucket(Bucket=bucket)
            await store.close()
    print(f"{size_mib:.0f} MiB video through a vidjobs API process on S3 storage (versitygw, "
          f"loopback), {args.rounds} interleaved rounds; MiB/s median (min-max)")
    for name, values in rates.items():
        print(f"  {name:<32} {spread(values)}")
    up = statistics.median(rates["API upload (POST /v1/sources)"]) / statistics.median(rates["boto3 upload"])
    down = [statistics.median(rates[k]) / statistics.median(rates["boto3 download"])
            for k in ("API download (307, presigned)", "API download (redirect=false)")]
    print(f"  API / boto3: upload {up:.2f}; download 307 {down[0]:.2f}, redirect=false {down[1]:.2f}")


async def make_output(http: httpx.AsyncClient, auth: dict[str, str], tmp: Path,
                      env: dict[str, str], store: S3Storage, source: str) -> str:
    """Submit an edit on the uploaded source and run it with a copying worker here."""
    edit = {"source": {"digest": source}, "operations": [{"op": "trim", "start": 0, "end": 1}]}
    r = await http.post("/v1/jobs", json=edit, headers=auth)
    assert r.status_code in (200, 201), r.text
    key = str(r.json()["key"])
    settings = Settings(data_dir=tmp / "worker", poll_seconds=0.2)
    db = Database(f"sqlite+aiosqlite:///{tmp / 'api' / 'vidjobs.db'}")
    runner = Runner(ClaimService(db, settings), CopyExecutor(), store, settings, concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while (await http.get(f"/v1/jobs/{key}", headers=auth)).json()["status"] not in ("succeeded", "failed"):
        await asyncio.sleep(0.2)
    stop.set()
    await task
    await db.dispose()
    shutil.rmtree(tmp / "worker", ignore_errors=True)
    return key


if __name__ == "__main__":
    asyncio.run(main())
