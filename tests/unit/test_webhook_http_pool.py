"""Timed-out webhook attempts must not use up the sender's connection pool (httpcore leaks a
pool slot when a request is cancelled under contention: encode/httpcore#1093). A receiver
that never answers times attempts out; one that answers must still get its POST at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jobs.urlguard import Policy
from workers.webhooks import http

OPEN = Policy(allow_http=True, allow_private=True)


@pytest.fixture
async def receiver() -> AsyncIterator[int]:
    """/slow never answers (it holds the connection); /fast answers 204 at once."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if head.startswith(b"POST /slow"):
                    await asyncio.sleep(30)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    server.close()


async def test_timed_out_attempts_leave_the_pool_usable(receiver: int) -> None:
    slow = f"http://127.0.0.1:{receiver}/slow"
    for wave in range(40):  # attempts that all time out, at every phase, under contention
        limits = [0.001 * (1 + (wave * 7 + i) % 50) for i in range(6)]
        outcomes = await asyncio.gather(*(
            http.post(slow, {}, b"{}", policy=OPEN, time_limit=t, max_body_bytes=1024)
            for t in limits
        ))  # fmt: skip
        assert all(not o.ok and o.error for o in outcomes)
        assert all(o.duration_ms < 2000 for o in outcomes), [o.duration_ms for o in outcomes]
    fast = await http.post(
        f"http://127.0.0.1:{receiver}/fast", {}, b"{}", policy=OPEN,
        time_limit=2.0, max_body_bytes=1024,
    )  # fmt: skip
    assert fast.ok, fast.error
