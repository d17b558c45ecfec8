"""The console under test: the real API app (compose) served by uvicorn on 127.0.0.1 in a
thread of its own, against a real database, and helpers that change jobs through the same
services as the API and the workers (on the server's event loop)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from jobs.console.auth import create_operator
from jobs.models import Job
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import TenantRef, create_tenant
from workers import compose

T = TypeVar("T")


@dataclass
class Stack:
    settings: Settings
    loop: asyncio.AbstractEventLoop = field(init=False)
    c: compose.Components = field(init=False)
    url: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Stack:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            self.c = compose.build(self.settings)
            await compose.migrate(self.c.db, self.c.blobs)
            config = uvicorn.Config(self.c.app(), host="127.0.0.1", port=0, log_level="warning",
                                    lifespan="off")
            self._server = uvicorn.Server(config)
            task = asyncio.create_task(self._server.serve())
            while not self._server.started:
                await asyncio.sleep(0.02)
            port = self._server.servers[0].sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            await task
            await self.c.close()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        assert ready.wait(30), "the console's server did not start"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` on the server's loop (its database pool lives there)."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return fut.result(60)

    # --- what a test sets up ----------------------------------------------------------

    def tenant(self, name: str) -> tuple[TenantRef, str]:
        async def make() -> tuple[TenantRef, str]:
            async with self.c.db.transaction() as conn:
                return await create_tenant(conn, name)
        return self.run(make)

    def operator(self, name: str) -> str:
        async def make() -> str:
            async with self.c.db.transaction() as conn:
                return await create_operator(conn, name)
        return self.run(make)

    def submit(self, tenant: TenantRef, i: int, **extra: Any) -> Job:
        req = EditRequest.model_validate({
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": i, "end": i + 1}],
            **extra,
        })

        async def go() -> Job:
            return (await self.c.service.submit(tenant, req)).job
        return self.run(go)

    def claim(self, tenant: TenantRef, key: str, owner: str = "worker-a") -> Job:
        async def go() -> Job:
            job = await self.c.claims.claim_by_key(tenant.id, key, owner)
            assert job is not None, f"{key} was not claimable"
            return job
        return self.run(go)

    def fail(self, tenant: TenantRef, key: str, message: str = "ffmpeg exited 1") -> Job:
        job = self.claim(tenant, key)
        return self.run(lambda: self.c.claims.fail(job, code="ffmpeg_failed", message=message,
                                                   retryable=False))

    def heartbeat(self, job: Job, progress: float) -> None:
        self.run(lambda: self.c.claims.heartbeat(job, progress=progress))

    def succeed_with_file(self, tenant: TenantRef, key: str, path: Path, media: str) -> Job:
        job = self.claim(tenant, key)

        async def go() -> Job:
            digest, size = await self.c.blobs.put_file(path)
            return await self.c.claims.succeed(
                job, {"digest": digest, "size": size, "media_type": media})
        return self.run(go)


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def make_mp4(path: Path, seconds: int = 3) -> Path:
    """A real H.264 mp4 made by ffmpeg (moov atom first, so a browser starts at once)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)],
        check=True, timeout=60,
    )
    return path
