"""The job page's tasks graph and package player in a real browser (Debian's Chromium through
Playwright) against the real API app on a real PostgreSQL: a job of several tasks shows its
tasks and follows their status without a reload; an HLS package made by the real ffmpeg
executors plays through its signed playback URL in the console's hls.js player, with the
sprites' thumbnails as a scrubbing preview. Screenshots go to docs/console/."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jobs.models import Job
from jobs.tenants import TenantRef
from tests.console.stack import Stack
from tests.console.test_console_browser import AUDIT, signed_in, until
from tests.integration.test_tasks import make_graph, plan
from tests.support.packages import build_package, build_renditions, build_sprites, make_source

pytestmark = [pytest.mark.postgres, pytest.mark.browser]
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def graph_job(stack: Stack, tenant: TenantRef, name: str) -> tuple[Job, dict[str, Job]]:
    """A job of three tasks, "join" waiting for "left" and "right" (the shape of a package:
    renditions, then the package), made by the graph's own `attach`."""
    plans = [plan("left"), plan("right"), plan("join", "left", "right")]
    return stack.run(lambda: make_graph(stack.c.db, tenant, name, plans))


def task_status(page: Any, name: str) -> str:
    return str(page.locator(f"#task-{name} [data-field=status]").inner_text())


def wait_text(page: Any, name: str, want: str, timeout: float = 15.0) -> str:
    import time
    deadline = time.monotonic() + timeout
    got = task_status(page, name)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = task_status(page, name)
    return got


def test_a_job_of_several_tasks_shows_its_tasks_and_follows_them_live(
    browser: Any, stack: Stack, shots: Path
) -> None:
    acme, token = stack.tenant("graph-acme")
    job, tasks = graph_job(stack, acme, "console-graph")
    assert job.role == "graph" and sorted(tasks) == ["join", "left", "right"]
    page = signed_in(browser, stack, token)
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{job.key}")
    assert page.locator("ol#tasks > li").count() == 3
    assert [task_status(page, n) for n in ("left", "right", "join")] == ["pending", "pending", "waiting"]
    assert "edit" in page.locator("#task-join").inner_text()  # the kind
    # the dependency arrows are links to the tasks waited for (and back)
    deps = page.locator("#task-join .deps a")
    assert [deps.nth(i).get_attribute("href") for i in range(deps.count())] == ["#task-left", "#task-right"]
    assert page.locator("#task-left .deps a").get_attribute("href") == "#task-join"
    # a task is claimed, makes progress and succeeds; another fails: the page follows
    # without a reload, and the job's failure cancels the task that waited for it
    left = stack.claim(acme, tasks["left"].key)
    assert wait_text(page, "left", "running") == "running"
    stack.heartbeat(left, 0.5)
    assert until(page, "document.querySelector('#task-left progress').value", above=0.4) == 0.5
    assert page.locator("#task-left [data-field=attempts]").inner_text() == "1 of 2"
    # the job's own bar is its tasks' mean, and it is "running" while they run (as the API)
    assert until(page, "document.getElementById('job-progress').value", above=0.1) == pytest.approx(0.1667)
    assert page.locator("#job-status").inner_text() == "running"
    found = page.evaluate(AUDIT)  # labelled controls and AA contrast, the tasks included
    assert found["checked"] > 20 and found["low"] == [] and found["unnamed"] == [], found
    page.screenshot(path=str(shots / "tasks.png"), full_page=True)
    stack.run(lambda: stack.c.claims.succeed(left, {"work": "left"}))
    assert wait_text(page, "left", "succeeded") == "succeeded"
    right = stack.claim(acme, tasks["right"].key)
    stack.run(lambda: stack.c.claims.fail(right, code="ffmpeg_failed",
                                          message="ffmpeg exited 1: no video stream",
                                          retryable=False))
    assert wait_text(page, "right", "failed") == "failed"
    assert "no video stream" in page.locator("#task-right [data-field=error]").inner_text()
    assert wait_text(page, "join", "cancelled") == "cancelled"
    assert page.locator("#job-status").inner_text() == "failed"
    page.close()


def test_the_tasks_feed_is_tenant_bound(browser: Any, stack: Stack) -> None:
    acme, _ = stack.tenant("feed-acme")
    _, other_token = stack.tenant("feed-globex")
    job, _ = graph_job(stack, acme, "console-feed")
    page = signed_in(browser, stack, other_token)
    r = page.request.get(f"{stack.url}/console/jobs/{acme.id}/{job.key}/tasks")
    assert r.status == 404 and r.json()["error"]["code"] == "not_found"
    page.close()


def _build(work: Path, fmt: str) -> dict[str, Any]:
    """An HLS or DASH package of two rungs and 1 s sprites of a 4 s source, by the real executors
    (in a thread of its own: the executors' asyncio.run cannot share Playwright's loop)."""
    source = make_source(FFMPEG, work / "source.mp4", seconds=4)
    _, renditions = build_renditions(FFMPEG, source, work, [{"height": 240}, {"height": 360}], 2)
    built = build_package(FFMPEG, renditions, work, fmt, 2)
    sprites = build_sprites(FFMPEG, source, work / "sprites", interval_seconds=1, width=96,
                            columns=2, rows=2)
    return {"package": (built.output, dict(built.package.files)),
            "thumbnails": (sprites.metadata, dict(sprites.files))}


def package_job(stack: Stack, tenant: TenantRef, work: Path, fmt: str) -> Job:
    with ThreadPoolExecutor(1) as pool:
        parts = pool.submit(_build, work, fmt).result(300)
    key = stack.submit(tenant, 7).key
    job = stack.claim(tenant, key)

    async def go() -> Job:
        output: dict[str, Any] = {}
        for part, (meta, files) in parts.items():
            stored = {}
            for rel, path in files.items():
                digest, size = await stack.c.blobs.put_file(path)
                stored[rel] = {"digest": digest, "size": size}
            output[part] = {**meta, "files": stored}
        return await stack.c.claims.succeed(job, output)
    return stack.run(go)


@pytest.mark.parametrize("fmt", ["hls", "dash"])
def test_a_package_plays_in_the_console_player(
    browser: Any, stack: Stack, tmp_path: Path, shots: Path, fmt: str
) -> None:
    acme, token = stack.tenant(f"package-{fmt}-acme")
    job = package_job(stack, acme, tmp_path, fmt)
    page = signed_in(browser, stack, token)
    log: list[str] = []  # the page's console and uncaught errors (a CSP refusal shows here)
    page.on("console", lambda m: log.append(m.text))
    page.on("pageerror", lambda e: log.append(f"uncaught: {e}"))
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{job.key}")
    player = "document.getElementById('package-player')"
    page.locator("video#package-player").wait_for()
    # the vendored player, served from the console's static files
    library = "window.Hls" if fmt == "hls" else "window.dashjs"
    assert page.evaluate(f"typeof {library}") in ("function", "object")
    ready = until(page, f"{player}.readyState")
    assert ready >= 2, (page.locator("#playback-message").inner_text(), log)  # HAVE_CURRENT_DATA
    page.evaluate(f"{player}.muted = true")
    page.evaluate(f"{player}.play()")
    assert until(page, f"{player}.currentTime", above=0.5) > 0.5
    assert page.evaluate(f"{player}.src").startswith("blob:")  # Media Source Extensions
    if fmt == "hls":
        assert page.evaluate("window.vidjobsConsole.playback.hls.levels.length") == 2
    else:
        assert page.evaluate("window.vidjobsConsole.playback.dash.getVideoElement() !== null")
    # the manifests and the thumbnails index are linked through the signed URL
    manifest = page.get_by_role("link", name=f"{fmt.upper()} manifest").get_attribute("href", timeout=5000)
    assert "/play/" in manifest and manifest.endswith("master.m3u8" if fmt == "hls" else ".mpd")
    vtt = page.get_by_role("link", name="Thumbnails (WebVTT sprite index)")
    assert vtt.get_attribute("href", timeout=5000).endswith("thumbnails/thumbnails.vtt")
    # the poster is the first sprite; scrubbing shows a thumbnail from the sheets
    assert until(page, f"{player}.poster.length", above=100) > 100
    page.locator("#scrub").hover()
    page.locator("#scrub-preview").wait_for(state="visible")
    assert "sprite-" in page.evaluate("document.getElementById('scrub-preview').style.backgroundImage")
    found = page.evaluate(AUDIT)
    assert found["checked"] > 20 and found["low"] == [] and found["unnamed"] == [], found
    assert not [m for m in log if "Content Security Policy" in m or m.startswith("uncaught")], log
    if fmt == "hls":
        page.screenshot(path=str(shots / "package-player.png"), full_page=False)
    page.close()
