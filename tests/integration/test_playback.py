"""Playback of real packages through the API: signed URLs, every segment fetched and decoded,
CORS, content types, Range, tenant isolation and refused tokens, on both stores.

The task graph is not in this branch yet, so a succeeded job is inserted directly with the
contract's output shape ({"package": <package task output>, "thumbnails": ...}), its files
made by the real executors and stored by digest in the real store (local dir or versitygw).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import sqlalchemy as sa
import uvicorn

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.models import Job
from jobs.packaging.tokens import playback_secret, sign
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage, Storage
from jobs.tenants import create_tenant
from tests.support.packages import (
    Built,
    build_package,
    build_renditions,
    build_sprites,
    make_source,
    task_output,
)
from workers.ffmpeg.binary import find_ffmpeg

pytestmark = pytest.mark.ffmpeg
KEY = "vj1_" + "ab" * 32


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An HLS and a CMAF package of one 3-rung ladder, and sprites, built once."""
    ffmpeg = find_ffmpeg()
    work = tmp_path_factory.mktemp("playback")
    source = make_source(ffmpeg, work / "source.mp4", seconds=4)
    ladder = [{"height": 720}, {"height": 360}, {"height": 240}]
    _, rungs = build_renditions(ffmpeg, source, work, ladder, 2)
    sprites = build_sprites(
        ffmpeg, source, work / "sprites", interval_seconds=1, width=96, columns=2, rows=2
    )
    return {
        "hls": build_package(ffmpeg, rungs, work, "hls"),
        "cmaf": build_package(ffmpeg, rungs, work, "cmaf"),
        "sprites": sprites,
        "ffmpeg": ffmpeg,
    }


async def store_files(store: Storage, files: dict[str, Path], scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        copy = scratch / name
        shutil.copyfile(path, copy)  # put_file consumes its file
        await store.put_file(copy)


async def insert_succeeded(db: Database, tenant_id: str, key: str, output: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC)
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(Job.__table__).values(  # type: ignore[arg-type]
                tenant_id=tenant_id, key=key, status="succeeded", spec={"source": {}},
                labels={}, run_after=now, output=output, progress=1.0, attempts=1,
                created_at=now, updated_at=now, finished_at=now,
            )
        )  # fmt: skip


class Stack:
    def __init__(
        self, http: httpx.AsyncClient, auth: dict[str, str], ids: dict[str, str], app: Any
    ) -> None:
        self.http, self.auth, self.ids, self.app = http, auth, ids, app

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url.removeprefix("http://test"), **kw)


@pytest.fixture
async def stack(
    db: Database, service: JobService, settings: Settings, store: Storage, made: dict[str, Any],
    tmp_path: Path,
) -> AsyncIterator[Stack]:  # fmt: skip
    async with db.transaction() as conn:
        a, ta = await create_tenant(conn, "acme")
        b, tb = await create_tenant(conn, "globex")
    for fmt in ("hls", "cmaf"):
        built: Built = made[fmt]
        await store_files(store, built.package.files, tmp_path / fmt)
    await store_files(store, made["sprites"].files, tmp_path / "sprites")
    sprites = task_output(made["sprites"])
    await insert_succeeded(db, a.id, KEY, {"package": made["hls"].output, "thumbnails": sprites})
    await insert_succeeded(db, a.id, "vj1_" + "cd" * 32, {"package": made["cmaf"].output})
    # The other tenant has a job with the same key string and a different package.
    await insert_succeeded(db, b.id, KEY, {"package": made["cmaf"].output})
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        auth = {"acme": f"Bearer {ta}", "globex": f"Bearer {tb}"}
        yield Stack(client, auth, {"acme": a.id, "globex": b.id}, app)


def decode(ffmpeg: str, data: bytes, where: Path) -> None:
    where.write_bytes(data)
    run = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(where), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


@pytest.mark.parametrize("fmt,key", [("hls", KEY), ("cmaf", "vj1_" + "cd" * 32)])
async def test_every_segment_plays_through_the_playback_url(
    stack: Stack, made: dict[str, Any], fmt: str, key: str, tmp_path: Path
) -> None:
    pb = await stack.get(f"/v1/jobs/{key}/playback", headers={"Authorization": stack.auth["acme"]})
    assert pb.status_code == 200, pb.text
    body = pb.json()
    assert body["url"].startswith("http://test/play/") and body["url"].endswith("/master.m3u8")
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    master_resp = await stack.get(body["url"])  # no bearer token: the URL is the grant
    assert master_resp.status_code == 200
    assert master_resp.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert master_resp.headers["access-control-allow-origin"] == "*"
    master = m3u8.loads(master_resp.text, uri=body["url"])
    assert [p.stream_info.resolution[1] for p in master.playlists] == [720, 360, 240]
    media_uris = [p.absolute_uri for p in master.playlists] + [m.absolute_uri for m in master.media]
    fetched = 0
    for uri in media_uris:
        resp = await stack.get(uri)
        assert resp.status_code == 200, uri
        media = m3u8.loads(resp.text, uri=uri)
        init = b""
        if media.segment_map:
            got = await stack.get(media.segment_map[0].absolute_uri)
            assert got.headers["content-type"] == "video/mp4"
            init = got.content
        for seg in media.segments:
            got = await stack.get(seg.absolute_uri)
            assert got.status_code == 200
            assert got.headers["content-type"] == (
                "video/mp2t" if fmt == "hls" else "video/iso.segment"
            )
            decode(
                made["ffmpeg"],
                init + got.content,
                tmp_path / f"seg{fetched}.{'ts' if fmt == 'hls' else 'mp4'}",
            )
            fetched += 1
    assert fetched == sum(
        1
        for n in made[fmt].output["files"]
        if n.endswith((".ts", ".m4s")) and not n.startswith("init")
    )
    if fmt == "cmaf":
        mpd = await stack.get(body["manifests"]["dash"])
        assert mpd.status_code == 200 and mpd.headers["content-type"] == "application/dash+xml"


async def test_segments_honour_range_and_cors_preflight(stack: Stack, made: dict[str, Any]) -> None:
    pb = (
        await stack.get(f"/v1/jobs/{KEY}/playback", headers={"Authorization": stack.auth["acme"]})
    ).json()
    base = pb["url"].rsplit("/", 1)[0]
    data = (made["hls"].root / "stream_0_00001.ts").read_bytes()
    part = await stack.get(f"{base}/stream_0_00001.ts", headers={"Range": "bytes=188-375"})
    assert part.status_code == 206 and part.content == data[188:376]
    assert part.headers["content-range"] == f"bytes 188-375/{len(data)}"
    assert "Content-Range" in part.headers["access-control-expose-headers"]
    pre = await stack.http.options(
        f"{base.removeprefix('http://test')}/stream_0_00001.ts",
        headers={"Origin": "http://player.example", "Access-Control-Request-Headers": "range"},
    )
    assert pre.status_code == 204 and "Range" in pre.headers["access-control-allow-headers"]
    # The sprites' WebVTT index and its sheets resolve under the same token.
    vtt = await stack.get(pb["thumbnails"])
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    sheet = vtt.text.split("\n")[3].split("#")[0]
    got = await stack.get(pb["thumbnails"].rsplit("/", 1)[0] + "/" + sheet)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == made["sprites"].files[sheet].read_bytes()


async def test_tokens_and_keys_never_reach_another_tenants_files(
    stack: Stack, made: dict[str, Any], settings: Settings
) -> None:
    acme = {"Authorization": stack.auth["acme"]}
    globex = {"Authorization": stack.auth["globex"]}
    a = (await stack.get(f"/v1/jobs/{KEY}/playback", headers=acme)).json()
    b = (await stack.get(f"/v1/jobs/{KEY}/playback", headers=globex)).json()
    # Same key string, two tenants: each token serves its own tenant's package only.
    a_master = (await stack.get(a["url"])).text
    b_master = (await stack.get(b["url"])).text
    assert "stream_0.m3u8" in a_master and "media_0.m3u8" in b_master
    b_base = b["url"].rsplit("/", 1)[0]
    assert (await stack.get(f"{b_base}/stream_0_00000.ts")).status_code == 404  # acme's file
    # An acme job key that globex does not have: unknown, with its bearer token.
    cmaf_key = "vj1_" + "cd" * 32
    assert (await stack.get(f"/v1/jobs/{cmaf_key}/playback", headers=globex)).status_code == 404
    assert (
        await stack.get(f"/v1/jobs/{cmaf_key}/package/master.m3u8", headers=globex)
    ).status_code == 404
    mine = await stack.get(
        f"/v1/jobs/{cmaf_key}/package/master.m3u8", headers=acme, params={"redirect": "false"}
    )
    assert mine.status_code == 200 and "#EXT-X-MEDIA:TYPE=AUDIO" in mine.text
    assert (await stack.get(f"/v1/jobs/{cmaf_key}/package/master.m3u8")).status_code == 401
    secret = playback_secret(settings)
    token = a["url"].split("/")[4]
    payload, sig = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    forged_for_b = sign(b"x" * 32, stack.ids["acme"], cmaf_key, int(time.time()) + 600)
    expired = sign(secret, stack.ids["acme"], KEY, int(time.time()) - 1)
    for bad, code in [
        (f"{flipped}.{sig}", "playback_token_invalid"),
        (f"{payload}.{sig[:-1]}", "playback_token_invalid"),
        (forged_for_b, "playback_token_invalid"),
        ("garbage", "playback_token_invalid"),
        (expired, "playback_token_expired"),
    ]:
        resp = await stack.get(f"/play/{bad}/master.m3u8")
        assert resp.status_code == 403, (bad, resp.text)
        assert resp.json()["error"]["code"] == code
        assert resp.headers["access-control-allow-origin"] == "*"
    # A valid token for a job of another tenant's id cannot be made without the secret,
    # and one signed for acme's tenant id and a key acme lacks finds nothing.
    none = sign(secret, stack.ids["acme"], "vj1_" + "ef" * 32, int(time.time()) + 600)
    missing = await stack.get(f"/play/{none}/master.m3u8")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    unknown = await stack.get(a["url"].rsplit("/", 1)[0] + "/nothere.ts")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


@pytest.mark.s3
@pytest.mark.parametrize("store", ["s3"], indirect=True)  # an S3 storage feature only
async def test_s3_segments_can_be_presigned_redirects(
    stack: Stack, store: Storage, made: dict[str, Any], settings: Settings
) -> None:
    assert not isinstance(store, LocalStorage)
    settings.playback_redirect = True
    try:
        pb = (
            await stack.get(
                f"/v1/jobs/{KEY}/playback", headers={"Authorization": stack.auth["acme"]}
            )
        ).json()
        base = pb["url"].rsplit("/", 1)[0]
        playlist = await stack.get(f"{base}/stream_0.m3u8")
        assert playlist.status_code == 200  # playlists stay here, so relative URIs resolve
        seg = await stack.get(f"{base}/stream_0_00000.ts")
        assert seg.status_code == 307
        async with httpx.AsyncClient() as direct:
            got = await direct.get(seg.headers["location"])
        assert got.status_code == 200
        assert got.content == (made["hls"].root / "stream_0_00000.ts").read_bytes()
    finally:
        settings.playback_redirect = False


async def test_head_answers_the_headers_of_a_segment(stack: Stack, made: dict[str, Any]) -> None:
    pb = (
        await stack.get(f"/v1/jobs/{KEY}/playback", headers={"Authorization": stack.auth["acme"]})
    ).json()
    url = pb["url"].rsplit("/", 1)[0].removeprefix("http://test") + "/stream_1_00000.ts"
    head = await stack.http.head(url)
    size = (made["hls"].root / "stream_1_00000.ts").stat().st_size
    assert head.status_code == 200 and head.headers["content-length"] == str(size)
    assert head.headers["content-type"] == "video/mp2t" and head.content == b""


# The console's vendored hls.js (jobs/console/vendor: package.json + lock file).
HLS_JS = Path(__file__).parents[2] / "jobs" / "console" / "static" / "vendor" / "hls.min.js"
PAGE = """<!doctype html><html><body><video id="v" muted></video><pre id="out">pending</pre>
<script src="/hls.min.js"></script><script>
const v = document.getElementById("v"), out = document.getElementById("out");
const hls = new Hls({enableWorker: false}); let levels = 0, frags = 0; const fatal = [];
hls.on(Hls.Events.MANIFEST_PARSED, (e, d) => { levels = d.levels.length; v.play().catch(() => {}); });
hls.on(Hls.Events.FRAG_BUFFERED, () => frags++);
hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) fatal.push(d.details); });
hls.loadSource(URL_HERE); hls.attachMedia(v);
setInterval(() => { out.textContent = JSON.stringify({levels, frags, fatal,
  buffered: v.buffered.length ? v.buffered.end(0) : 0}); }, 100);
</script></body></html>"""


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_hls_js_plays_the_playback_url_in_a_real_browser(stack: Stack) -> None:
    """Headless Chromium runs hls.js on a page of another origin (so CORS is exercised for
    real): it parses the master (3 levels) and buffers segments through the signed URL."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not HLS_JS.is_file():
        message = f"needs chromium and the vendored hls.js (looked at {HLS_JS})"
        if os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, HTMLResponse
    from starlette.routing import Route

    api, api_task, api_url = await _serve(stack.app)
    auth = {"Authorization": stack.auth["acme"]}
    pb = (await stack.get(f"/v1/jobs/{KEY}/playback", headers=auth)).json()
    page = PAGE.replace("URL_HERE", json.dumps(pb["url"].replace("http://test", api_url)))
    site = Starlette(
        routes=[
            Route("/", lambda r: HTMLResponse(page)),
            Route("/hls.min.js", lambda r: FileResponse(HLS_JS, media_type="text/javascript")),
        ]
    )
    web, web_task, web_url = await _serve(site)
    try:
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
            "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=20000",
            "--dump-dom", f"{web_url}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        dom, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        for server, task in ((web, web_task), (api, api_task)):
            server.should_exit = True
            await asyncio.wait_for(task, 10)
    found = re.search(r'<pre id="out">([^<]*)</pre>', dom.decode())
    assert found is not None, dom[-500:]
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert state["levels"] == 3 and state["fatal"] == [], state
    assert state["frags"] >= 1 and state["buffered"] > 1, state
