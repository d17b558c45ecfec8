"""The API's HTTP server: uvicorn with timeouts against stalled and idle clients.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but it has no
timeout for a request head: a connection that sends nothing, or half a header line, is
kept as long as the client likes (and any byte cancels the keep-alive timer). The protocols
here add one: a request head must be complete within `header_timeout` of the connection (or
of the first byte of a next request on a kept-alive one), else the connection is closed,
and a head may be at most `MAX_HEAD_BYTES`. Both of uvicorn's HTTP/1.1 implementations get
it (httptools, uvicorn's choice when installed, and h11); a request neither can parse is
answered in the API's JSON error envelope. The body's read timeout is the app's
(`jobs.api.hardening.BodyReadTimeout`), which answers 408 and closes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobs.settings import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger("vidjobs.http")
MAX_HEAD_BYTES = 32 * 1024  # request line and headers together


def _bad_request_bytes(msg: str) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "bad_request",
                "message": f"{msg} (not valid HTTP/1.1)",
                "details": None,
            }
        }
    ).encode()
    head = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


if TYPE_CHECKING:
    _Protocol = asyncio.Protocol
else:
    _Protocol = object  # at run time the next class in the MRO is uvicorn's protocol


class _HeadDeadline(_Protocol):
    """The request-head deadline and size cap, shared by both protocols (mixed in before
    uvicorn's protocol class).

    `_head_started()` when a head begins (the connection opened, or a next request's first
    byte), `_head_done()` when it is complete; `_head_too_large(n)` counts what arrived
    while it was incomplete."""

    header_timeout: float
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_bad_request_bytes(msg))
        self.transport.close()

    def _head_started(self) -> None:
        if self._head_timer is None:
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_large(self, n: int) -> bool:
        """Count `n` bytes that left the head incomplete; True once over the cap."""
        if self._head_timer is None:
            return False
        self._head_bytes += n
        return self._head_bytes > MAX_HEAD_BYTES

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request head took over %gs", self.header_timeout)
            self.transport.close()


class GuardedH11(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with a head deadline (h11 caps the head's size itself)."""

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._head_started()  # the first bytes of a next request on a kept-alive one
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_done()


if HttpToolsProtocol is not None:

    class GuardedHttpTools(_HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with a head deadline and a head size cap."""

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_too_large(len(data)) and not self.transport.is_closing():
                self.send_400_response("Request head too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_started()

        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()


def protocol_class(kind: str = "auto") -> type[_HeadDeadline]:
    """httptools when installed (as uvicorn's "auto"), else h11; `kind` forces one."""
    if kind == "h11" or HttpToolsProtocol is None:
        return GuardedH11
    return GuardedHttpTools


def server_config(
    app: Any, host: str, port: int, settings: Settings, *, http: str = "auto", **kwargs: Any
) -> uvicorn.Config:
    """The uvicorn config of the API with its timeouts (settings `HTTP_*`)."""
    guarded: Any = protocol_class(http)
    protocol = functools.partial(guarded, header_timeout=settings.http_header_timeout_seconds)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=settings.http_keep_alive_seconds,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **kwargs,
    )
