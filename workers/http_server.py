"""The API's HTTP server: uvicorn with timeouts against stalled and idle clients.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but it has no
timeout for a request head: a connection that sends nothing, or half a header line, is
kept as long as the client likes (and any byte cancels the keep-alive timer). `GuardedH11`
adds one: a request head must be complete within `header_timeout` of the connection (or
of the previous response), else the connection is closed. h11's limit on an incomplete
head (`h11_max_incomplete_event_size`) bounds its size. The body's read timeout is the
app's (`jobs.api.hardening.BodyReadTimeout`), which answers 408 and closes.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobs.settings import Settings

MAX_HEAD_BYTES = 32 * 1024  # request line and headers together


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the first bytes of a next request on a kept-alive one
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle now: uvicorn's keep-alive timer runs; a head timer starts with the next byte.
        self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse gets the API's JSON error envelope, then a close."""
        body = json.dumps(
            {
                "error": {
                    "code": "bad_request",
                    "message": f"{msg} (not valid HTTP/1.1)",
                    "details": None,
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.logger.info(
                "closing a connection whose request head took over %gs", self.header_timeout
            )
            self.transport.close()


def server_config(
    app: Any, host: str, port: int, settings: Settings, **kwargs: Any
) -> uvicorn.Config:
    """The uvicorn config of the API with its timeouts (settings `HTTP_*`)."""
    protocol = functools.partial(GuardedH11, header_timeout=settings.http_header_timeout_seconds)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=settings.http_keep_alive_seconds,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **kwargs,
    )
