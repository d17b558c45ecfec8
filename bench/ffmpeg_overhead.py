"""Orchestration overhead: submit-to-succeeded through vidjobs vs the same ffmpeg run directly.

    .venv/bin/python -m bench.ffmpeg_overhead [--runs 3]

For a 10 s 720p clip: (a) trim + scale (re-encode), (b) a stream-copy trim. "Direct" runs
the exact argv vidjobs builds for the job; "vidjobs" is an embedded instance (SQLite,
one worker) from the submission to the commit of the job's succeeded row, including
preflight, probing, the fsync into the blob store and the fenced finish. The end is the
commit itself (the claim service's after-commit hook), not a poll of the status: polling
every few ms costs the CPU that the encode then lacks on 2 cores, and a coarser poll adds
its own wait. Medians of --runs, measured in one run, direct and vidjobs alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.outbox import Event
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from migrations import upgrade
from workers.ffmpeg import FfmpegExecutor, find_ffmpeg, preflight
from workers.ffmpeg.binary import encoders
from workers.ffmpeg.command import build_command
from workers.runner import Runner
from workers.wakeup import Wakeup

CASES: dict[str, dict[str, Any]] = {
    "trim 2-8 s + scale 640": {
        "operations": [{"op": "trim", "start": 2, "end": 8}, {"op": "scale", "width": 640}]
    },
    "stream-copy trim 2-8 s": {"operations": [{"op": "trim", "start": 2, "end": 8, "fast": True}]},
    "thumbnail at 5 s (jpg)": {
        "operations": [{"op": "thumbnail", "at": 5}],
        "output": {"container": "jpg"},
    },
}


def make_clip(ffmpeg: str, out: Path) -> None:
    from workers.ffmpeg.testmedia import make_clip as clip

    clip(out, seconds=10, size="1280x720", rate=30, preset="veryfast", ffmpeg=ffmpeg)


async def direct_seconds(ffmpeg: str, spec: dict[str, Any], clip: Path, tmp: Path) -> float:
    probes = [await preflight(clip)]
    out = tmp / f"direct-{uuid.uuid4().hex}.{spec['output']['container']}"
    cmd = build_command(ffmpeg, spec, [clip], probes, out, encoders(ffmpeg))
    start = time.perf_counter()
    subprocess.run(
        cmd.argv,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "src").mkdir()
        clip = tmp / "src" / "clip.mp4"
        make_clip(ffmpeg, clip)
        settings = Settings(data_dir=tmp / "data", source_roots=[tmp / "src"], poll_seconds=5)
        db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
        await upgrade(db.engine)
        wakeup = Wakeup()
        service = JobService(db, settings, after_commit=lambda _e: wakeup.notify())
        blobs = LocalStorage(settings.data_dir / "blobs")
        ended: dict[str, asyncio.Future[str]] = {}

        def committed(events: Sequence[Event]) -> None:
            for e in events:
                waiter = ended.get(e.job_key)
                if e.type in ("job.succeeded", "job.failed") and waiter and not waiter.done():
                    waiter.set_result(e.type)

        runner = Runner(
            ClaimService(db, settings, after_commit=committed),
            FfmpegExecutor(),
            blobs,
            settings,
            wakeup=wakeup,
            concurrency=1,
        )
        stop = asyncio.Event()
        loop_task = asyncio.create_task(runner.run(stop))
        results: dict[str, Any] = {}
        warm = True  # one untimed job first: what a running worker has already done once
        for name, ops in CASES.items():
            req = EditRequest.model_validate({"source": {"path": "clip.mp4"}, **ops})
            direct, through = [], []
            for _ in range(args.runs + warm):
                async with db.transaction() as conn:  # a fresh tenant: same work, new key
                    tenant, _ = await create_tenant(conn, f"b{uuid.uuid4().hex[:8]}")
                prepared = await service.prepare(tenant, req)
                spec, key = prepared.spec, prepared.key
                direct.append(await direct_seconds(ffmpeg, spec, clip, tmp))
                ended[key] = asyncio.get_running_loop().create_future()
                start = time.perf_counter()
                await service.submit(tenant, req)
                await ended[key]
                elapsed = time.perf_counter() - start
                job = await service.get(tenant, key)
                assert job.status == "succeeded", job.error_message
                if warm:  # (the encoder and filter lists read, the probe child started)
                    warm = False
                    direct.pop()
                    continue
                through.append(elapsed)
            d, t = statistics.median(direct), statistics.median(through)
            added = [(b - a) * 1000 for a, b in zip(direct, through, strict=True)]
            results[name] = {
                "direct_s": d,
                "vidjobs_s": t,
                "ratio": t / d,
                "added_ms": statistics.median(added),
                "added_ms_range": [min(added), max(added)],
            }
        stop.set()
        await loop_task
        await db.dispose()
    print(f"ffmpeg orchestration overhead, 10 s 720p clip, median of {args.runs} runs")
    print(f"{'case':<26} {'direct s':>9} {'vidjobs s':>10} {'ratio':>7}  added ms (range)")
    for name, r in results.items():
        lo, hi = r["added_ms_range"]
        print(
            f"{name:<26} {r['direct_s']:>9.3f} {r['vidjobs_s']:>10.3f} {r['ratio']:>7.2f}"
            f"  {r['added_ms']:>6.0f} ({lo:.0f} to {hi:.0f})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
