"""URL imports with the SSRF guard, against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant

CLIP = b"pretend video bytes " * 5000


class Origin:
    """A loopback HTTP server that records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = 0
        self.redirect_to = ""

    async def start(self) -> AsyncIterator[Origin]:
        app = web.Application()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.path, dict(request.headers)))
            if request.path == "/clip.mp4":
                return web.Response(body=CLIP, content_type="video/mp4")
            if request.path == "/redirect":
                raise web.HTTPFound(self.redirect_to)
            if request.path == "/slow":
                resp = web.StreamResponse()
                await resp.prepare(request)
                for _ in range(50):
                    await resp.write(b"x" * 100)
                    await asyncio.sleep(0.1)
                return resp
            if request.path == "/endless":
                resp = web.StreamResponse()  # chunked: no Content-Length to trust
                await resp.prepare(request)
                for _ in range(100):
                    await resp.write(b"y" * 65536)
                return resp
            return web.Response(status=404)

        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async for o in Origin().start():
        yield o


@pytest.fixture
async def other_origin() -> AsyncIterator[Origin]:
    async for o in Origin().start():
        yield o


async def client(db: Database, settings: Settings, **overrides: Any) -> tuple[httpx.AsyncClient, dict[str, str]]:
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, f"t{id(overrides)}")
    s = settings.model_copy(update=overrides)
    state = ApiState(db=db, service=JobService(db, s), settings=s, blobs=LocalStorage(s.data_dir / "blobs"),
                     max_upload_bytes=1024 * 1024)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://api")
    return http, {"Authorization": f"Bearer {token}"}


async def post_url(http: httpx.AsyncClient, auth: dict[str, str], url: str) -> httpx.Response:
    return await http.post("/v1/sources", json={"url": url}, headers=auth)


async def test_an_allowed_url_is_imported_like_an_upload(db: Database, settings: Settings, origin: Origin) -> None:
    http, auth = await client(db, settings, url_source_allow=[f"127.0.0.1:{origin.port}"])
    async with http:
        r = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/clip.mp4")
        assert r.status_code == 201, r.text
        assert r.json()["digest"] == f"sha256:{hashlib.sha256(CLIP).hexdigest()}"
        assert r.json()["size"] == len(CLIP)
        edit = {"source": {"digest": r.json()["digest"]}, "operations": [{"op": "trim", "start": 0, "end": 1}]}
        assert (await http.post("/v1/jobs", json=edit, headers=auth)).status_code == 201
    [(path, headers)] = origin.requests
    assert path == "/clip.mp4"
    assert "Authorization" not in headers and "Cookie" not in headers  # nothing of the caller's


@pytest.mark.parametrize(
    "url, why",
    [
        ("https://127.0.0.1:{port}/clip.mp4", "non-public address"),
        ("https://localhost:{port}/clip.mp4", "non-public address"),
        ("https://[::1]:{port}/clip.mp4", "non-public address"),
        ("https://[::ffff:127.0.0.1]:{port}/clip.mp4", "non-public address"),
        ("https://169.254.169.254/latest/meta-data/", "non-public address"),
        ("https://10.1.2.3/clip.mp4", "non-public address"),
        ("https://100.64.1.2/clip.mp4", "non-public address"),  # shared (CGNAT) space
        ("https://0.0.0.0:{port}/clip.mp4", "non-public address"),
        ("http://127.0.0.1:{port}/clip.mp4", "non-public address"),
        ("http://example.com/clip.mp4", "only allowed for targets"),
        ("ftp://example.com/clip.mp4", "only https"),
        ("file:///etc/passwd", "only https"),
        ("https://user:pw@example.com/clip.mp4", "credentials"),
    ],
)
async def test_private_loopback_and_link_local_targets_are_refused_before_any_request(
    db: Database, settings: Settings, origin: Origin, url: str, why: str
) -> None:
    http, auth = await client(db, settings)
    async with http:
        r = await post_url(http, auth, url.format(port=origin.port))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "url_not_allowed"
    assert why in r.json()["error"]["message"]
    assert origin.requests == []


async def test_a_redirect_to_loopback_is_refused(
    db: Database, settings: Settings, origin: Origin, other_origin: Origin
) -> None:
    """Only the first origin is allowed; it redirects to another loopback server."""
    origin.redirect_to = f"http://127.0.0.1:{other_origin.port}/clip.mp4"
    http, auth = await client(db, settings, url_source_allow=[f"127.0.0.1:{origin.port}"])
    async with http:
        r = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/redirect")
        assert r.status_code == 422 and r.json()["error"]["code"] == "url_not_allowed", r.text
        assert other_origin.requests == []
        origin.redirect_to = "https://169.254.169.254/"
        r = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/redirect")
        assert r.status_code == 422 and r.json()["error"]["code"] == "url_not_allowed"
        origin.redirect_to = "/clip.mp4"  # same allowed origin: followed
        r = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/redirect")
        assert r.status_code == 201, r.text


async def test_oversize_and_slow_downloads_are_cut_off(db: Database, settings: Settings, origin: Origin) -> None:
    http, auth = await client(
        db, settings, url_source_allow=["127.0.0.0/8"], url_source_timeout_seconds=1.0
    )
    async with http:
        big = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/endless")
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        slow = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/slow")
        assert slow.status_code == 422 and slow.json()["error"]["code"] == "url_fetch_failed"
        assert "within 1 s" in slow.json()["error"]["message"]
        missing = await post_url(http, auth, f"http://127.0.0.1:{origin.port}/nothing")
        assert missing.status_code == 422 and "HTTP 404" in missing.json()["error"]["message"]
        bad = await http.post("/v1/sources", json={"url": "x", "extra": 1}, headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    scratch = settings.data_dir / "blobs" / "tmp"
    assert not scratch.exists() or [p for p in scratch.rglob("*") if p.is_file()] == []
