"""HTTP hardening middlewares: HEAD without a body, and a read timeout on request bodies.

`HeadWithoutBody`: a HEAD request is answered by its GET route's status and headers (its
Content-Length included) with the body dropped, whatever server runs the app.

`BodyReadTimeout`: a request body (an upload) that stalls for longer than `seconds` between
two chunks ends the request: the route's temp file is removed as on any error, the answer
is a 408 in the error envelope with `Connection: close`, and the server drops the
connection (the unread rest of the body makes it unusable). Header and idle timeouts are the
server's (`workers.http_server`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.api.limits import run_answering, send_error


class HeadWithoutBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing goes out for HEAD
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(scope, receive, headers_only)


class BodyTimedOut(Exception):
    """The client sent no body bytes for longer than the read timeout."""


class BodyReadTimeout:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # waiting for a disconnect (a stream), not for body bytes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                raise BodyTimedOut() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await run_answering(
            self.app,
            scope,
            timed_receive,
            send,
            BodyTimedOut,
            lambda: _timed_out(send, self.seconds),
        )


async def _timed_out(send: Send, seconds: float) -> None:
    message = f"the request body stalled: no bytes for {seconds:g} s"
    details = {"read_timeout_seconds": seconds}
    close = [(b"connection", b"close")]
    await send_error(send, 408, "request_timeout", message, details, close)
