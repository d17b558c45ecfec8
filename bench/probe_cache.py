"""Added time per short job with and without the executor's probe cache (by content digest),
and what one probe costs: the PyAV child vs the `ffmpeg -i` run the old text probe made.

    .venv/bin/python -m bench.probe_cache [--rounds 5]

Each round runs every case twice through one embedded vidjobs (SQLite, one worker), once
with the cache off and once on (the order alternates between rounds), each beside the same
argv run directly; "added" is vidjobs (POST to succeeded) minus direct. Medians over the
rounds with the range (min-max). Not part of the suite (`python -m bench`).
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
from pathlib import Path
from typing import Any

from bench.ffmpeg_overhead import CASES, direct_seconds, make_clip
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from migrations import upgrade
from workers.ffmpeg import FfmpegExecutor, find_ffmpeg, probe
from workers.runner import Runner
from workers.wakeup import Wakeup

SHORT_CASES: dict[str, dict[str, Any]] = {
    **CASES,
    "thumbnail at 3 s": {
        "operations": [{"op": "thumbnail", "at": 3}],
        "output": {"container": "jpg"},
    },
}


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} ({min(xs):.1f}-{max(xs):.1f})"


async def probe_costs(ffmpeg: str, clip: Path, rounds: int) -> dict[str, list[float]]:
    """ms per probe: the PyAV child vs a bare `ffmpeg -i` (the old probe's process)."""
    out: dict[str, list[float]] = {"pyav child": [], "ffmpeg -i": []}
    for _ in range(rounds):
        start = time.perf_counter()
        await probe(clip)
        out["pyav child"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-i", f"file:{clip}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out["ffmpeg -i"].append((time.perf_counter() - start) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cases", default="", help="comma-separated name prefixes; all if empty")
    args = parser.parse_args()
    wanted = [c for c in args.cases.split(",") if c]
    cases = {n: b for n, b in SHORT_CASES.items() if not wanted or n.startswith(tuple(wanted))}
    ffmpeg = find_ffmpeg()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "src").mkdir()
        clip = tmp / "src" / "clip.mp4"
        make_clip(ffmpeg, clip)
        costs = await probe_costs(ffmpeg, clip, args.rounds)
        settings = Settings(data_dir=tmp / "data", source_roots=[tmp / "src"], poll_seconds=5)
        db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
        await upgrade(db.engine)
        wakeup = Wakeup()
        service = JobService(db, settings, after_commit=lambda _e: wakeup.notify())
        blobs = LocalStorage(settings.data_dir / "blobs")
        executor = FfmpegExecutor()
        cache = executor.probes  # kept (warm) while switched off
        runner = Runner(
            ClaimService(db, settings), executor, blobs, settings, wakeup=wakeup, concurrency=1
        )
        stop = asyncio.Event()
        loop_task = asyncio.create_task(runner.run(stop))
        added: dict[str, dict[str, list[float]]] = {name: {"off": [], "on": []} for name in cases}

        async def one(req: EditRequest) -> float:
            async with db.transaction() as conn:  # a fresh tenant: same work, new key
                tenant, _ = await create_tenant(conn, f"b{uuid.uuid4().hex[:8]}")
            spec = (await service.prepare(tenant, req)).spec
            direct = await direct_seconds(ffmpeg, spec, clip, tmp)
            start = time.perf_counter()
            key = (await service.submit(tenant, req)).job.key
            while (job := await service.get(tenant, key)).status not in ("succeeded", "failed"):
                await asyncio.sleep(0.002)
            through = time.perf_counter() - start
            assert job.status == "succeeded", job.error_message
            return (through - direct) * 1000

        for r in range(args.rounds + 1):  # round 0 warms up (imports, first probe)
            for name, body in cases.items():
                req = EditRequest.model_validate({"source": {"path": "clip.mp4"}} | body)
                for mode in ("off", "on") if r % 2 else ("on", "off"):
                    executor.probes = None if mode == "off" else cache
                    ms = await one(req)
                    if r:
                        added[name][mode].append(ms)
                    print(f"round {r} {name} cache {mode}: {ms:.1f} ms added", flush=True)
        stop.set()
        await loop_task
        await db.dispose()
    print(
        f"added time per short job (ms, vidjobs minus direct), 10 s 720p clip, "
        f"median (min-max) of {args.rounds} interleaved rounds"
    )
    print(f"{'case':<26} {'probe cache off':>22} {'probe cache on':>22}")
    for name, modes in added.items():
        print(f"{name:<26} {spread(modes['off']):>22} {spread(modes['on']):>22}")
    print("one probe (ms): " + ", ".join(f"{k} {spread(v).strip()}" for k, v in costs.items()))
    if args.json:
        args.json.write_text(json.dumps({"added_ms": added, "probe_ms": costs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
