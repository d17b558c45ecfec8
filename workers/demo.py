"""`vidjobs demo`: the embedded default end to end, on a clip it makes itself.

Starts vidjobs in this process (SQLite, in-process bus, API, workers, reaper), submits
several real edits plus duplicates through the HTTP API, shows progress bars, and ends with
a table of what happened to each request, including a probe of every output.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobs.settings import CREDENTIALS, Settings

CLIP_SECONDS = 6


@dataclass
class Submission:
    name: str
    body: str  # raw JSON, so that key order and number spelling are the client's own
    expect: str  # "new" or "duplicate"
    status: int = 0
    key: str = ""
    replayed: bool = False
    job: dict[str, Any] = field(default_factory=dict)


def edits() -> list[tuple[str, dict[str, Any] | str, str]]:
    trim_scale = {
        "source": {"path": "clip.mp4"},
        "operations": [{"op": "trim", "start": 1, "end": 4}, {"op": "scale", "width": 640}],
    }
    reordered = (
        '{"operations": [{"end": 4.000, "start": "1000ms", "op": "trim"},'
        ' {"width": 640, "op": "scale"}], "source": {"path": "clip.mp4"}}'
    )
    return [
        ("trim 1-4s, 640w mp4", trim_scale, "new"),
        ("same request again", trim_scale, "duplicate"),
        ("same, reordered JSON", reordered, "duplicate"),
        (
            "stream-copy trim 0-3s",
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": 0, "end": 3, "fast": True}],
            },
            "new",
        ),
        (
            "thumbnail at 2s jpg",
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "thumbnail", "at": 2}],
                "output": {"container": "jpg"},
            },
            "new",
        ),
        (
            "2s gif, 320w",
            {
                "source": {"path": "clip.mp4"},
                "operations": [
                    {"op": "trim", "end": 2},
                    {"op": "scale", "width": 320},
                    {"op": "fps", "fps": 10},
                ],
                "output": {"container": "gif"},
            },
            "new",
        ),
        (
            "2x speed, mute, webm",
            {
                "source": {"path": "clip.mp4"},
                "operations": [
                    {"op": "scale", "width": 480},
                    {"op": "speed", "factor": 2},
                    {"op": "mute"},
                ],
                "output": {"container": "webm"},
            },
            "new",
        ),
        (
            "watermark + rotate 90",
            {
                "source": {"path": "clip.mp4"},
                "operations": [
                    {"op": "trim", "end": 2},
                    {"op": "scale", "height": 360},
                    {
                        "op": "watermark",
                        "source": {"path": "logo.png"},
                        "width": 64,
                        "opacity": 0.8,
                    },
                    {"op": "rotate", "degrees": 90},
                ],
            },
            "new",
        ),
    ]


async def make_media(folder: Path) -> None:
    """A 6 s 720p test clip with a tone, and a small logo image, made by ffmpeg's lavfi."""
    from workers.ffmpeg.testmedia import make_clip, make_image

    clip = folder / "clip.mp4"
    await asyncio.to_thread(make_clip, clip, seconds=CLIP_SECONDS, size="1280x720", rate=30)
    await asyncio.to_thread(make_image, folder / "logo.png")


async def run_demo(base: Settings, console: Console, *, keep: bool = False) -> int:
    from workers.compose import run_embedded
    from workers.ffmpeg import probe

    work = Path(tempfile.mkdtemp(prefix="vidjobs-demo-"))
    sources = work / "sources"
    sources.mkdir()
    settings = base.model_copy(
        update={
            "data_dir": work / "data",
            "source_roots": [sources.resolve()],
            "database_url": None,
        }
    )
    console.print(f"[bold]vidjobs demo[/] in {work}")
    with console.status("making a 6 s 720p test clip with ffmpeg..."):
        await make_media(sources)
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(
        run_embedded(settings, "127.0.0.1", 0, 2, "ffmpeg", stop=stop, ready=ready, quiet=True)
    )
    try:
        await asyncio.wait_for(_first(ready.wait(), server), 60)
        creds = json.loads((settings.data_dir / CREDENTIALS).read_text())
        console.print(f"embedded vidjobs up at {creds['url']} (SQLite, in-process bus, 2 workers)")
        async with httpx.AsyncClient(
            base_url=creds["url"], headers={"Authorization": f"Bearer {creds['token']}"}, timeout=30
        ) as http:
            subs = await submit_all(http, console)
            await watch(http, subs, console)
            again = await submit(
                http, Submission("first edit, after done", subs[0].body, "duplicate")
            )
            subs.append(again)
            rows = [await describe(http, s, work, probe) for s in subs]
    finally:
        stop.set()
        await asyncio.wait_for(server, 60)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    show(console, rows)
    ok = all(r["ok"] for r in rows)
    console.print(
        "[bold green]all edits done, every duplicate answered without running again[/]"
        if ok
        else "[bold red]something did not go as expected (see the table)[/]"
    )
    return 0 if ok else 1


async def _first(wait: Any, server: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(wait)
    done, _ = await asyncio.wait([waiter, server], return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        waiter.cancel()
        server.result()
        raise RuntimeError("vidjobs stopped before it was ready")


async def submit(http: httpx.AsyncClient, sub: Submission) -> Submission:
    resp = await http.post(
        "/v1/jobs", content=sub.body, headers={"Content-Type": "application/json"}
    )
    body = resp.json()
    if resp.status_code >= 400:
        raise RuntimeError(f"{sub.name}: HTTP {resp.status_code}: {body['error']['message']}")
    sub.status, sub.key, sub.job = resp.status_code, body["key"], body
    sub.replayed = resp.headers.get("Idempotent-Replayed") == "true"
    return sub


async def submit_all(http: httpx.AsyncClient, console: Console) -> list[Submission]:
    subs = []
    for name, body, expect in edits():
        raw = body if isinstance(body, str) else json.dumps(body)
        sub = await submit(http, Submission(name, raw, expect))
        what = (
            "[yellow]duplicate, answered with the existing job[/]"
            if sub.replayed
            else "[green]new job[/]"
        )
        console.print(f"  {sub.status} {name}: {what} {sub.key[:16]}...")
        subs.append(sub)
    return subs


async def watch(http: httpx.AsyncClient, subs: list[Submission], console: Console) -> None:
    unique = {s.key: s.name for s in subs if not s.replayed}
    with Progress(
        TextColumn("{task.description:<42}"),
        BarColumn(),
        TextColumn("{task.fields[status]:<10}"),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        tasks = {
            key: bars.add_task(name, total=1.0, status="pending") for key, name in unique.items()
        }
        deadline = time.monotonic() + 600
        while tasks and time.monotonic() < deadline:
            for key, task in list(tasks.items()):
                job = (await http.get(f"/v1/jobs/{key}")).json()
                bars.update(task, completed=job["progress"], status=job["status"])
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    del tasks[key]
            await asyncio.sleep(0.2)


async def describe(
    http: httpx.AsyncClient, sub: Submission, work: Path, probe: Any
) -> dict[str, Any]:
    job = (await http.get(f"/v1/jobs/{sub.key}")).json()
    row: dict[str, Any] = {
        "name": sub.name,
        "key": sub.key,
        "status": job["status"],
        "http": sub.status,
        "answer": "duplicate" if sub.replayed else "new",
        "output": "",
        "probe": "",
    }
    row["ok"] = job["status"] == "succeeded" and row["answer"] == sub.expect
    if job["status"] != "succeeded":
        err = job.get("error") or {}
        row["output"] = f"{err.get('code')}: {err.get('message', '')[:60]}"
        return row
    resp = await http.get(f"/v1/jobs/{sub.key}/output")
    out = work / f"out-{sub.key[4:16]}"
    out.write_bytes(resp.content)
    p = await probe(out)
    kind = resp.headers["content-type"].split("/")[-1].replace("x-matroska", "mkv")
    row["output"] = f"{kind} {len(resp.content) // 1024} KiB"
    duration = f"{p.duration_ms / 1000:.2f}s " if p.duration_ms and p.duration_ms > 100 else ""
    row["probe"] = (
        f"{duration}{p.width}x{p.height} {p.video_codec}{'+audio' if p.has_audio else ''}"
    )
    return row


def show(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="vidjobs demo: what happened to each request")
    for col in ("request", "key", "HTTP", "answer", "status", "output", "probed output"):
        table.add_column(col, no_wrap=col in ("key", "HTTP", "answer", "status"))
    for r in rows:
        style = "" if r["ok"] else "red"
        table.add_row(
            r["name"],
            r["key"][:10] + "…",
            str(r["http"]),
            r["answer"],
            r["status"],
            r["output"],
            r["probe"],
            style=style,
        )
    console.print(table)
