"""The load: unique edits plus about 30% duplicate submissions of four kinds.

- twin: the same body sent twice at the same moment
- reordered: the same edit with keys reordered and times spelled differently
- idempotent retry: a client resending a request with the same Idempotency-Key
- after completion: an edit resubmitted once its job has succeeded

Every request is retried on connection errors, 503 and 429 (bounded), as a client would.

The mix: `MIX` lists the job shapes with their weights; a job's shape is a function of its
index, so a duplicate repeats its original's shape: single edits and 2-rung HLS ladders (a
job of 3 tasks; the sleep executor runs every task kind, `--executor ffmpeg` the same shapes
through real ffmpeg); `harness.audit_tasks` checks the tasks.

`measure_capacity` offers unique jobs as fast as the fleet takes them, with no faults, and
gives the completion rate: the harness then offers a set share of it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


def _trim(i: int) -> dict[str, Any]:
    return {
        "source": {"path": "clip.mp4"},
        "operations": [{"op": "trim", "start_ms": i, "end_ms": i + 500}],
    }


def _trim_scale(i: int) -> dict[str, Any]:
    body = _trim(i)
    body["operations"].append({"op": "scale", "width": 320})
    return body


def _ladder(i: int) -> dict[str, Any]:
    """A 2-rung HLS package: a job of 3 tasks (2 renditions, the package). The rates make
    its tasks its own (equal task specs are shared between jobs): unique below 49,900 jobs."""
    kbps = 100 + i % 49_900
    return {
        "source": {"path": "clip.mp4"},
        "package": {
            "format": "hls",
            "segment_seconds": 2,
            "ladder": [{"height": 240, "video_bitrate_kbps": kbps + 100}, {"height": 144, "video_bitrate_kbps": kbps}],
        },
    }


# (shape, weight, body of job i). Chunked jobs are not here: chunking is decided from an
# uploaded source's probe, and the load's source is a path.
MIX: list[tuple[str, float, Callable[[int], dict[str, Any]]]] = [
    ("single_trim", 0.6, _trim),
    ("single_trim_scale", 0.25, _trim_scale),
    ("ladder", 0.15, _ladder),
]


def shape(i: int) -> str:
    """The mix entry of job i: a fixed function of i (duplicates repeat it)."""
    draw = random.Random(i).random() * sum(w for _, w, _ in MIX)
    for name, weight, _ in MIX:
        draw -= weight
        if draw < 0:
            return name
    return MIX[-1][0]


def body(i: int) -> dict[str, Any]:
    return next(make for name, _, make in MIX if name == shape(i))(i)


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def reordered(i: int) -> str:
    if shape(i) == "ladder":  # no times to respell: the same request, every key reordered
        return json.dumps(_reversed_keys(body(i)))
    # Same edit: keys in another order, times as seconds with trailing zeros.
    ops = [{"end": f"{(i + 500) / 1000:.4f}", "op": "trim", "start": f"{i}ms"}]
    ops += [dict(reversed(op.items())) for op in body(i)["operations"][1:]]
    text = ", ".join(
        "{" + ", ".join(f'"{k}": {v if k == "end" else json.dumps(v)}' for k, v in op.items()) + "}"
        for op in ops
    )
    return f'{{"operations": [{text}], "source": {{"path": "clip.mp4"}}}}'


@dataclass
class Answer:
    kind: str  # new, twin, reordered, idempotent, after_completion
    index: int
    status: int
    key: str | None
    replayed: bool
    attempts: int


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    gave_up: list[tuple[str, int, str]] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)

    @property
    def accepted_keys(self) -> set[str]:
        return {a.key for a in self.answers if a.key and a.status in (200, 201)}

    def count(self, kind: str) -> int:
        return sum(1 for a in self.answers if a.kind == kind)


class Load:
    def __init__(
        self,
        url: str,
        token: str,
        jobs: int,
        seconds: float,
        seed: int,
        concurrency: int = 32,
        first_index: int = 0,
        duplicates: bool = True,
    ) -> None:
        self.first_index = first_index
        self.duplicates = duplicates
        self.url = url
        self.token = token
        self.jobs = jobs
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.result = LoadResult()

    async def _post(
        self,
        http: httpx.AsyncClient,
        kind: str,
        index: int,
        content: str,
        headers: dict[str, str] | None = None,
    ) -> Answer | None:
        for attempt in range(1, 61):
            try:
                r = await http.post(
                    "/v1/jobs",
                    content=content,
                    headers={"Content-Type": "application/json", **(headers or {})},
                )
            except httpx.HTTPError:
                await asyncio.sleep(min(2.0, 0.1 * attempt))
                continue
            if r.status_code in (429, 502, 503):
                await asyncio.sleep(min(2.0, float(r.headers.get("Retry-After", "1")) * 0.5))
                continue
            try:
                data = r.json()
            except ValueError:  # every error should be the JSON envelope: record what came
                data = {"not_json": r.text[:300], "content_type": r.headers.get("content-type")}
            answer = Answer(
                kind,
                index,
                r.status_code,
                data.get("key"),
                r.headers.get("Idempotent-Replayed") == "true",
                attempt,
            )
            if r.status_code >= 400:
                self.result.gave_up.append((kind, index, f"HTTP {r.status_code}: {data}"))
            self.result.answers.append(answer)
            return answer
        self.result.gave_up.append((kind, index, "no answer after 60 attempts"))
        return None

    async def run(self) -> LoadResult:
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=15, limits=limits
        ) as http:
            sem = asyncio.Semaphore(self.concurrency)
            plan = self._plan()
            start = time.monotonic()
            tasks = []
            for n, (kind, index) in enumerate(plan):
                # Spread the submissions over the load window, so faults meet work in flight.
                delay = start + self.seconds * n / max(1, len(plan)) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(http, sem, kind, index)))
            await asyncio.gather(*tasks)
            await self._after_completion(http)
        return self.result

    def _plan(self) -> list[tuple[str, int]]:
        unique = round(self.jobs * 0.75) if self.duplicates else self.jobs
        dups = self.jobs - unique
        plan: list[tuple[str, int]] = [
            ("new", self.first_index + i) for i in range(unique)
        ]
        kinds = ["twin", "reordered", "idempotent"]
        later: list[tuple[str, int]] = []
        for d in range(dups):
            kind = kinds[d % 3] if d % 4 else "after_completion"
            target = self.first_index + self.rng.randrange(unique)
            later.append((kind, target))
        for item in later:
            if item[0] != "after_completion":
                plan.insert(self.rng.randrange(len(plan) + 1), item)
        self._after = [item for item in later if item[0] == "after_completion"]
        return plan

    async def _one(
        self, http: httpx.AsyncClient, sem: asyncio.Semaphore, kind: str, index: int
    ) -> None:
        async with sem:
            if kind == "new":
                a = await self._post(http, "new", index, json.dumps(body(index)))
                if a and a.key:
                    self.result.keys[index] = a.key
            elif kind == "twin":
                raw = json.dumps(body(index))
                await asyncio.gather(
                    self._post(http, "twin", index, raw), self._post(http, "twin", index, raw)
                )
            elif kind == "reordered":
                await self._post(http, "reordered", index, reordered(index))
            elif kind == "idempotent":
                header = {"Idempotency-Key": f"client-{index}-{self.rng.randrange(10**9)}"}
                raw = json.dumps(body(index))
                await self._post(http, "idempotent", index, raw, header)
                await self._post(http, "idempotent", index, raw, header)  # the client's retry

    async def _after_completion(self, http: httpx.AsyncClient) -> None:
        """Resubmit edits whose jobs have succeeded (waits for each, bounded), as many at a
        time as the load's concurrency (one by one, they outlasted a long run's window)."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(index: int) -> None:
            async with sem:
                key = self.result.keys.get(index)
                deadline = time.monotonic() + 120
                while key and time.monotonic() < deadline:
                    try:
                        status = (await http.get(f"/v1/jobs/{key}")).json().get("status")
                    except (httpx.HTTPError, ValueError):
                        status = None
                    if status in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.5)
                await self._post(http, "after_completion", index, json.dumps(body(index)))

        await asyncio.gather(*(one(index) for _, index in self._after))


# Job i trims [i ms, i + 500 ms): within the harness's 4 s clip for i < 3,500 (what the real
# ffmpeg executor needs), and below the 24 h bound for any run. The probe's indexes start
# here, clear of a run's own (fewer than 60,000 unique jobs); `FFMPEG_PROBE_FIRST` keeps an
# ffmpeg probe inside the clip (its runs have fewer than 3,000 unique jobs).
PROBE_FIRST = 60_000
FFMPEG_PROBE_FIRST = 3_000


async def measure_capacity(
    url: str,
    token: str,
    jobs: int,
    seed: int,
    done: Callable[[], Awaitable[int]],
    first_index: int = PROBE_FIRST,
) -> tuple[float, LoadResult]:
    """Offer `jobs` unique jobs at once (no faults) and time their completions: the rate
    between the 10th and 90th percentile completion, in jobs/s (start-up and tail excluded).
    Returns (capacity, the probe's answers: they are audited like the rest)."""
    before = await done()
    load = Load(url, token, jobs, 0.0, seed, concurrency=64, first_index=first_index, duplicates=False)
    submit = asyncio.create_task(load.run())
    marks: dict[int, float] = {}
    deadline = time.monotonic() + 600
    lo, hi = before + jobs // 10, before + (jobs * 9) // 10
    while time.monotonic() < deadline:
        n = await done()
        now = time.monotonic()
        for mark in (lo, hi):
            if n >= mark and mark not in marks:
                marks[mark] = now
        if n >= before + jobs:
            break
        if submit.done() and load.result.gave_up:
            raise RuntimeError(f"capacity probe: submissions refused: {load.result.gave_up[:3]}")
        await asyncio.sleep(0.1)
    result = await submit
    if len(marks) < 2 or marks[hi] <= marks[lo]:
        raise RuntimeError(f"capacity probe did not finish: {await done() - before}/{jobs} done")
    return (hi - lo) / (marks[hi] - marks[lo]), result
