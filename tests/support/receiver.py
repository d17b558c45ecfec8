"""A real HTTP webhook receiver on 127.0.0.1 (aiohttp), scripted per request, recording all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    path: str


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"


class Receiver:
    """`script(n, request)` decides the n-th (0-based) reply; default 200."""

    def __init__(self, script: Callable[[int, Received], Reply] | None = None) -> None:
        self.script = script or (lambda n, r: Reply())
        self.received: list[Received] = []
        self.arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(dict(request.headers), await request.read(), time.time(), request.path)
        n = len(self.received)
        self.received.append(got)
        async with self.arrived:
            self.arrived.notify_all()
        reply = self.script(n, got)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    async def start(self, port: int = 0) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Until `count` requests arrived (or fail the test after `timeout`)."""

        async def enough() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.received) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"receiver got {len(self.received)} requests, expected {count} within {timeout}s"
            ) from None
        return self.received


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
