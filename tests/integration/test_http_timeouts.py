"""The API server's timeouts against stalled clients, through a real uvicorn server on
127.0.0.1 and raw sockets: a stalled upload body is answered 408 in the JSON envelope, its
connection is closed and its temp file removed within the read timeout; a connection that
sends no request head, or half of one, or stays idle after a response, is closed."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from workers.http_server import server_config

TIMEOUT = 1.0


@pytest.fixture(params=["httptools", "h11"])
async def server(
    request: pytest.FixtureRequest, db: Database, settings: Settings
) -> AsyncIterator[tuple[int, str, Path]]:
    """The API on a real uvicorn server, with each of its HTTP/1.1 implementations."""
    settings = settings.model_copy(
        update={
            "http_header_timeout_seconds": TIMEOUT,
            "http_body_read_timeout_seconds": TIMEOUT,
            "http_keep_alive_seconds": 1,
        }
    )
    blobs = LocalStorage(settings.data_dir / "blobs")
    blobs.ensure_scratch()
    app = create_app(ApiState(db=db, service=JobService(db, settings), settings=settings, blobs=blobs))
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "slow")
    config = server_config(
        app, "127.0.0.1", 0, settings, http=request.param, log_level="warning", lifespan="off", log_config=None
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # uvicorn has no event for it
        await asyncio.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield port, token, settings.data_dir / "blobs" / "tmp"
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    return s


async def _read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    got = b""
    async with asyncio.timeout(limit):
        while True:
            chunk = await loop.sock_recv(s, 65536)
            if not chunk:
                return got, time.monotonic() - started
            got += chunk


def _uploads(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("upload-*")) if tmp.exists() else []


async def test_a_stalled_upload_is_cut_off_and_leaves_no_temp_file(server: tuple[int, str, Path]) -> None:
    port, token, tmp = server
    s = _connect(port)
    head = (
        "POST /v1/sources HTTP/1.1\r\nHost: t\r\nContent-Type: video/mp4\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 10000000\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    seen: list[Path] = []

    async def watch() -> None:  # the upload starts (its temp file exists) before the cut
        while not seen:
            seen.extend(_uploads(tmp))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await loop.sock_sendall(s, head + b"\x00" * 64 * 1024)  # then nothing more
    answer, took = await _read_until_closed(s, 10 * TIMEOUT)
    watcher.cancel()
    s.close()
    assert seen, "the upload had started (its temp file exists)"
    assert took < 3 * TIMEOUT, took
    status, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status, answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
    await asyncio.sleep(0.2)
    assert _uploads(tmp) == [], "the stalled upload's temp file is gone"


async def test_a_connection_without_a_request_head_is_closed(server: tuple[int, str, Path]) -> None:
    port, _, _ = server
    silent = _connect(port)  # says nothing at all
    partial = _connect(port)  # half a header, then nothing (slowloris)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(partial, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: a")
    for s in (silent, partial):
        got, took = await _read_until_closed(s, 10 * TIMEOUT)
        s.close()
        assert got == b"" and took < 3 * TIMEOUT, (got, took)


async def test_idle_keep_alive_connections_are_closed_and_busy_ones_work(
    server: tuple[int, str, Path],
) -> None:
    port, _, _ = server
    s = _connect(port)
    loop = asyncio.get_running_loop()
    for _ in range(3):  # a kept-alive connection serves request after request
        await loop.sock_sendall(s, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b'"ok"' not in got:
            got += await asyncio.wait_for(loop.sock_recv(s, 65536), 5)
        assert got.startswith(b"HTTP/1.1 200")
    rest, took = await _read_until_closed(s, 10 * TIMEOUT)  # then idle: closed
    s.close()
    assert rest == b"" and took < 3, took


async def test_a_request_that_is_not_http_gets_the_json_envelope(server: tuple[int, str, Path]) -> None:
    port, _, _ = server
    s = _connect(port)
    await asyncio.get_running_loop().sock_sendall(s, b"\x16\x03\x01 not http at all\r\n\r\n")
    answer, _ = await _read_until_closed(s, 5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    body = answer.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_an_oversized_request_head_is_refused_in_the_json_envelope(
    server: tuple[int, str, Path],
) -> None:
    port, _, _ = server
    s = _connect(port)
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"a" * 40_000 + b"\r\n"
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(s, head)  # no end of head: it only grows
    except ConnectionError:
        pass
    answer, took = await _read_until_closed(s, 10 * TIMEOUT)
    s.close()
    assert took < TIMEOUT, took  # refused for its size, not left to the deadline
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"
