"""A request body limit enforced while the body streams in (Content-Length is not trusted)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answer 413 when a body is over `max_bytes`; `overrides` maps path prefixes to limits."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    def _limit(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await _too_large(send, limit)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        await run_answering(
            self.app, scope, limited_receive, send, _TooLarge, lambda: _too_large(send, limit)
        )


async def run_answering(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    error: type[Exception],
    answer: Callable[[], Awaitable[None]],
) -> None:
    """Run `app`; when it raises `error` before it began its response, send `answer()`."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except error:
        if not started:
            await answer()


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    message = f"the request body is larger than the limit of {limit} bytes"
    await send_error(send, 413, "payload_too_large", message, {"limit_bytes": limit})


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: Any,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """A whole response in the error envelope, straight from a middleware."""
    raw = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})
