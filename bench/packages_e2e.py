"""A 3-rung HLS ladder of a 60 s 720p source end to end through vidjobs vs the same ffmpeg.

    .venv/bin/python -m bench.packages_e2e [--rounds 3] [--seconds 60] [--concurrency 2]

"vidjobs" is a real `vidjobs up --executor ffmpeg` (embedded mode: SQLite, local blobs, a
fresh data directory per round so that no rung is reused from an earlier round): the
clock runs from POST /v1/jobs with `"package": {"format": "hls", "ladder": [{"height":
720}, {"height": 480}, {"height": 360}]}` until GET /v1/jobs/{key} says `succeeded`
(polled every 50 ms). The source is uploaded before the clock starts. That covers the task
graph: the claims, the preflight probe of each rung, the encodes, the probe of what each
wrote, storing the files by digest, the dependency release, fetching the rungs for the
package task, segmenting, reading back the playlists, the master, storing every segment.

"direct, sequential" and "direct, parallel" run exactly the argv the executors build for
that job (`plan_package` -> `rendition_command` / `package_command` in
`workers/ffmpeg/abr.py`), with subprocess: the rungs one after another, or at most
`--concurrency` at a time (the worker's slots, 2 by default in `vidjobs up`), then the
package command. Rounds are interleaved (sequential, parallel, vidjobs, ...); median and
spread (min-max) per side, and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.packages import summary
from jobs.packaging import plan_package
from jobs.packaging.models import PackageFormat
from jobs.packaging.specs import PackageSpec, RenditionSpec, parse_task_spec
from jobs.spec import EditRequest
from tests.support.packages import SOURCE_DIGEST, make_source
from workers.ffmpeg import find_ffmpeg, preflight
from workers.ffmpeg.abr import package_command, rendition_command

LADDER = [{"height": 720}, {"height": 480}, {"height": 360}]
PACKAGE = {"format": "hls", "ladder": LADDER}


def direct_argvs(ffmpeg: str, source: Path, tmp: Path) -> tuple[list[list[str]], list[str]]:
    """The rungs' argv and the package argv, built as the executors build them."""
    req = EditRequest.model_validate({"source": {"digest": SOURCE_DIGEST}, "package": PACKAGE})
    plans = plan_package(req, {"width": 1280, "height": 720})
    probe = asyncio.run(preflight(source))
    tmp.mkdir(parents=True, exist_ok=True)
    rungs, outs = [], []
    for plan in plans[:-1]:
        spec = parse_task_spec(RenditionSpec, plan.spec)
        out = tmp / f"{plan.name}.mp4"
        outs.append(out)
        rungs.append(
            rendition_command(
                ffmpeg, source, probe, out, height=spec.height,
                video_kbps=spec.video_bitrate_kbps, audio_kbps=spec.audio_bitrate_kbps,
                segment_seconds=spec.segment_seconds,
            ).argv
        )  # fmt: skip
    pkg_spec = parse_task_spec(PackageSpec, plans[-1].spec)
    pkg = tmp / "package"
    pkg.mkdir()
    package = package_command(ffmpeg, outs, True, PackageFormat(pkg_spec.format), pkg,
                              pkg_spec.segment_seconds)  # fmt: skip
    return rungs, package


async def _run(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... exited {proc.returncode}: {err.decode()[-500:]}")


async def _direct(rungs: list[list[str]], package: list[str], slots: int) -> None:
    gate = asyncio.Semaphore(slots)

    async def one(argv: list[str]) -> None:
        async with gate:
            await _run(argv)

    await asyncio.gather(*(one(a) for a in rungs))
    await _run(package)


def direct(ffmpeg: str, source: Path, tmp: Path, slots: int) -> float:
    rungs, package = direct_argvs(ffmpeg, source, tmp)
    start = time.perf_counter()
    asyncio.run(_direct(rungs, package, slots))
    return time.perf_counter() - start


def _start_up(data: Path, concurrency: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    sources = data.parent / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VIDJOBS_DATA_DIR": str(data), "VIDJOBS_SOURCE_ROOTS": str(sources)}
    for var in ("VIDJOBS_DATABASE_URL", "VIDJOBS_API_URL", "VIDJOBS_API_TOKEN",
                "VIDJOBS_KAFKA_BOOTSTRAP"):  # fmt: skip
        env.pop(var, None)
    argv = [sys.executable, "-m", "workers.cli", "up", "--port", "0", "--executor", "ffmpeg",
            "--concurrency", str(concurrency)]  # fmt: skip
    log = (data.parent / "up.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    creds = data / "credentials.json"
    deadline = time.monotonic() + 60
    while not (creds.exists() and "url" in creds.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vidjobs up did not come up; see {data.parent / 'up.log'}")
        time.sleep(0.1)
    return proc, json.loads(creds.read_text())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def end_to_end(source: Path, tmp: Path, concurrency: int) -> dict[str, Any]:
    """One job on a fresh `vidjobs up`: seconds from submit to succeeded, and its tasks."""
    import vidjobs

    proc, creds = _start_up(tmp / "data", concurrency)
    try:
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            src = vj.upload(source, media_type="video/mp4")
            start = time.perf_counter()
            job = vj.submit({"source": {"digest": src.digest}, "package": PACKAGE})
            while (got := vj.get(job.key)).status not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            if got.status != "succeeded":
                raise RuntimeError(f"job {job.key} {got.status}: {got.error}")
            tasks = vj.http.get(f"/v1/jobs/{job.key}/tasks").json()["tasks"]
    finally:
        _stop(proc)
    reused = [t["name"] for t in tasks if t.get("reused")]
    if reused:
        raise RuntimeError(f"rungs were reused, not encoded: {reused}")
    return {"seconds": elapsed, "tasks": sorted(t["name"] for t in tasks)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=2, help="worker slots (and direct's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ffmpeg = find_ffmpeg()
    root = Path(tempfile.mkdtemp(prefix="bench-packages-e2e-"))
    names = ("direct, sequential", "direct, parallel", "vidjobs end to end")
    times: dict[str, list[float]] = {n: [] for n in names}
    loads: list[float] = []
    try:
        source = make_source(ffmpeg, root / "source.mp4", seconds=args.seconds)
        for i in range(args.rounds):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                tmp = root / f"{i}-{names.index(name)}"
                if name == names[0]:
                    t = direct(ffmpeg, source, tmp, 1)
                elif name == names[1]:
                    t = direct(ffmpeg, source, tmp, args.concurrency)
                else:
                    e2e = end_to_end(source, tmp, args.concurrency)
                    t = e2e["seconds"]
                times[name].append(t)
                shutil.rmtree(tmp, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            print(f"round {i + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names)
                  + f"  (load {loads[-1]:.1f}, tasks {e2e['tasks']})", flush=True)  # fmt: skip
        out = {n: summary(times[n]) for n in names}
        v = out[names[2]]["median"]
        ratios = {f"vidjobs / {n}": v / out[n]["median"] for n in names[:2]}
        print(f"3-rung HLS ladder (720/480/360) of a {args.seconds:g} s 720p source, "
              f"{args.rounds} interleaved rounds, {args.concurrency} slots:")  # fmt: skip
        for n in names:
            s = out[n]
            print(f"  {n:20} median {s['median']:.2f} s  (min {s['min']:.2f}, max {s['max']:.2f})")
        for k, r in ratios.items():
            print(f"  ratio {k}: {r:.3f}")
        print(f"  load average (1 min) after each round: {', '.join(f'{x:.1f}' for x in loads)}")
        if args.json:
            args.json.write_text(json.dumps({"times": out, "ratios": ratios, "loads": loads}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
