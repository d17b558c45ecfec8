"""Submissions per second, unique keys vs duplicates, per database, two ways.

    .venv/bin/python -m bench.submit [--n 2000] [--concurrency 16] [--pg URL] [--no-http]
        [--rounds 3] [--serve-workers 1,2]

- Through the service: `JobService.submit` called in this process (no HTTP, no preflight).
- Through HTTP as batches: the same number of new edits in `POST /v1/jobs/batch` requests
  of 100 each (4 connections), beside the single requests' figure.
- Through HTTP: one `vidjobs serve` process (uvicorn, as deployed: source preflight with
  ffmpeg on, rate limit and in-flight cap off so they do not throttle the load) and an
  aiohttp client in this process with `--concurrency` connections, POSTing /v1/jobs. The
  source is a real 3 s clip (made with ffmpeg) so the preflight passes; every unique
  request trims it differently.

Unique requests first (each a new key: 201), then the same requests again (each a
duplicate: 200). PostgreSQL comes from --pg or VIDJOBS_TEST_DATABASE_URL (a throwaway
database per measurement, dropped afterwards); SQLite is a temp file. Everything runs in
the same run, so the ratios are comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.db import throwaway_database
from bench.stats import load_average, spread
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import create_tenant
from migrations import upgrade

T = TypeVar("T")
BATCH = 100  # edits per POST /v1/jobs/batch in the batch measurement
BATCH_CONNECTIONS = 4


async def _rate(
    items: Sequence[T], concurrency: int, send: Callable[[T], Awaitable[None]]
) -> float:
    """Items per second, sent by `concurrency` workers taking them in order."""
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            await send(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return len(items) / (time.perf_counter() - start)


async def measure(url: str, root: Path, n: int, concurrency: int) -> dict[str, float]:
    db = Database(url)
    await upgrade(db.engine)
    settings = Settings(data_dir=root / "data", source_roots=[root])
    service = JobService(db, settings)
    async with db.transaction() as conn:
        tenant, _ = await create_tenant(conn, f"bench{uuid.uuid4().hex[:6]}")
    requests = [
        EditRequest.model_validate(
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": i, "end": i + 1}],
            }
        )
        for i in range(n)
    ]
    # Warm up: connections, the digest cache, statement caches.
    for r in requests[:20]:
        await service.submit(tenant, r)

    async def submit(req: EditRequest) -> None:
        await service.submit(tenant, req)

    unique = await _rate(requests[20:], concurrency, submit)
    duplicate = await _rate(requests[20:], concurrency, submit)  # every key now exists
    await db.dispose()
    return {"unique_per_s": unique, "duplicate_per_s": duplicate}


def _trim(clip: Path, i: int) -> dict[str, Any]:
    start = i / 1000  # milliseconds apart: every i is a different edit, hence a new key
    return {"source": {"path": str(clip)}, "operations": [{"op": "trim", "start": start,
            "end": start + 0.5}]}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(url: str, root: Path, workers: int = 1) -> AsyncIterator[tuple[str, str]]:
    """`vidjobs serve --workers N` on a migrated database; yields (base URL, token)."""
    db = Database(url)
    await upgrade(db.engine)
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, f"http{uuid.uuid4().hex[:6]}")
    await db.dispose()
    port = free_port()
    env = {
        **os.environ,
        "VIDJOBS_DATABASE_URL": url,
        "VIDJOBS_DATA_DIR": str(root / f"serve-{port}"),
        "VIDJOBS_SOURCE_ROOTS": str(root),
        "VIDJOBS_RATE_LIMIT_PER_SECOND": "0",
        "VIDJOBS_MAX_IN_FLIGHT_PER_TENANT": "0",
    }
    vidjobs = str(Path(sys.executable).with_name("vidjobs"))
    log = (root / f"serve-{port}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        vidjobs, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as probe:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vidjobs serve did not start; see {log.name}")
                await asyncio.sleep(0.1)
        yield base, token
    finally:
        await stop_process(proc)
        log.close()


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def measure_http(
    url: str, root: Path, clip: Path, n: int, concurrency: int, workers: int = 1
) -> dict[str, float]:
    """The load comes from aiohttp with pre-encoded bodies: the client shares the 2 cores
    with the server and the database, so it must cost little per request."""
    import aiohttp

    async with serving(url, root, workers) as (base, token):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:
            bodies = [json.dumps(_trim(clip, i)).encode() for i in range(n + 20)]  # fresh db
            for body in bodies[:20]:  # warm up: connections, preflight cache, statements
                async with http.post("/v1/jobs", data=body) as r:
                    r.raise_for_status()

            def post(expect: int) -> Callable[[bytes], Awaitable[None]]:
                async def one(body: bytes) -> None:
                    async with http.post("/v1/jobs", data=body) as r:
                        text = await r.read()
                        if r.status != expect:
                            raise RuntimeError(f"expected {expect}, got {r.status}: {text!r}")

                return one

            unique = await _rate(bodies[20:], concurrency, post(201))
            duplicate = await _rate(bodies[20:], concurrency, post(200))
            # The same number of new edits again, as POST /v1/jobs/batch of BATCH each.
            fresh = [_trim(clip, 2 * n + 40 + i) for i in range(n)]
            batches = [
                json.dumps({"jobs": fresh[i : i + BATCH]}).encode() for i in range(0, n, BATCH)
            ]

            async def one_batch(body: bytes) -> None:
                async with http.post("/v1/jobs/batch", data=body) as r:
                    results = (await r.json())["results"]
                    if r.status != 200 or any(x["status"] != 201 for x in results):
                        raise RuntimeError(f"batch failed: {r.status} {results[:2]!r}")

            per_s = await _rate(batches, min(concurrency, BATCH_CONNECTIONS), one_batch)
    return {
        "unique_per_s": unique,
        "duplicate_per_s": duplicate,
        "batch_unique_per_s": per_s * BATCH,
    }


def _table(title: str, rows: dict[str, list[dict[str, float]]]) -> None:
    print(title)
    print(f"{'database':<16} {'unique/s':>18} {'duplicate/s':>18} {'dup cost / new cost':>20}")
    for name, runs in rows.items():
        ratio = [r["unique_per_s"] / r["duplicate_per_s"] for r in runs]
        print(
            f"{name:<16} {spread([r['unique_per_s'] for r in runs]):>18}"
            f" {spread([r['duplicate_per_s'] for r in runs]):>18}"
            f" {spread(ratio, '{:.2f}'):>20}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument(
        "--serve-workers", default="1", help="`vidjobs serve --workers` counts, e.g. 1,2"
    )
    parser.add_argument("--pg", default=os.environ.get("VIDJOBS_TEST_DATABASE_URL"))
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--no-http", action="store_true", help="only through the service")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    workers = [int(w) for w in args.serve_workers.split(",")]
    service: dict[str, list[dict[str, float]]] = {}
    http: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clip.mp4").write_bytes(os.urandom(1024 * 1024))
        clip = None
        if not args.no_http:
            from workers.ffmpeg.testmedia import make_clip

            clip = make_clip(root / "real.mp4", seconds=3)
        for r in range(args.rounds):
            lite = f"sqlite+aiosqlite:///{root / f'bench-{r}.db'}"
            if not args.no_sqlite:
                service.setdefault("sqlite", []).append(
                    await measure(lite, root, args.n, args.concurrency)
                )
            if args.pg:
                async with throwaway_database(args.pg, migrate=False) as url:
                    got = await measure(url, root, args.n, args.concurrency)
                service.setdefault("postgres", []).append(got)
            if clip is None:
                continue
            lite = f"sqlite+aiosqlite:///{root / f'http-{r}.db'}"
            if not args.no_sqlite:
                got = await measure_http(lite, root, clip, args.n, args.concurrency)
                http.setdefault("sqlite", []).append(got)
            for w in workers if args.pg else []:
                async with throwaway_database(args.pg, migrate=False) as url:
                    got = await measure_http(url, root, clip, args.n, args.concurrency, w)
                name = "postgres" if w == 1 else f"postgres x{w}"
                http.setdefault(name, []).append(got)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rounds = f"{args.rounds} interleaved round(s), median (min-max); {load_average()}"
    _table(
        f"submissions through the service: n={args.n}, concurrency={args.concurrency}; {rounds}",
        service,
    )
    results: dict[str, Any] = {"n": args.n, "concurrency": args.concurrency, "rounds": args.rounds}
    for name, runs in service.items():
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results[name]["dup_cost_ratio"] = statistics.median(
            r["unique_per_s"] / r["duplicate_per_s"] for r in runs
        )
    if http:
        _table(
            f"submissions through HTTP (`vidjobs serve`, xN: --workers N, preflight on): "
            f"n={args.n}, {args.concurrency} connections",
            http,
        )
        for name, runs in http.items():
            base = name.split(" ")[0]
            if base not in service:
                continue
            # Each round's HTTP figure against the same round's service figure.
            pairs = list(zip(runs, service[base], strict=False))
            uniq = [w["unique_per_s"] / s["unique_per_s"] for w, s in pairs]
            dup = [w["duplicate_per_s"] / s["duplicate_per_s"] for w, s in pairs]
            print(
                f"HTTP / service, {name}: unique {spread(uniq, '{:.2f}')},"
                f" duplicate {spread(dup, '{:.2f}')}"
            )
            results.setdefault("http_vs_service", {})[name] = {
                "unique": statistics.median(uniq), "duplicate": statistics.median(dup)
            }
        for name, runs in http.items():
            batch = [r["batch_unique_per_s"] for r in runs]
            ratio = [r["batch_unique_per_s"] / r["unique_per_s"] for r in runs]
            single = [r["unique_per_s"] for r in runs]
            print(
                f"HTTP {name}: POST /v1/jobs/batch of {BATCH} ({BATCH_CONNECTIONS} connections)"
                f" {spread(batch)} new jobs/s vs single POST /v1/jobs {spread(single)}/s:"
                f" {spread(ratio, '{:.2f}')}x"
            )
        results["http"] = {
            name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for name, runs in http.items()
        }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
