"""Following a job's Server-Sent Events stream (`GET /v1/jobs/{key}/events?follow=true`).

The stream sends the job's lifecycle events (each with its outbox id as the SSE id) and
progress samples, and closes after the job's last event. A broken connection is resumed
with `Last-Event-ID`, so no event is lost or repeated across reconnects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
from httpx_sse import ServerSentEvent

from vidjobs import _api, _http
from vidjobs.models import Event, Progress

SSE = "text/event-stream"
# After one of these the job changes no more (until someone retries it): the stream ends.
TERMINAL_EVENTS = frozenset({"job.succeeded", "job.failed", "job.cancelled"})


@dataclass
class Follow:
    """The resumable state of one followed stream."""

    key: str
    last_id: str | None = None
    last_type: str | None = None
    ended: bool = False
    failures: int = 0

    def call(self) -> _http.Call:
        headers = {"Accept": SSE}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return _http.Call(
            "GET", _api.events(self.key).path, params={"follow": "true"}, headers=headers
        )

    def check(self, resp: httpx.Response) -> bool:
        """True when the answer is a stream; False when the server does not stream (an
        older server answers the plain JSON list), so the caller polls instead."""
        return bool(resp.headers.get("content-type", "").split(";")[0].strip() == SSE)

    def closed(self) -> None:
        """The server closed the stream: it does so after the job's last event."""
        self.ended = self.last_type in TERMINAL_EVENTS

    def read(self, sse: ServerSentEvent) -> Event | Progress | None:
        try:
            body = json.loads(sse.data) if sse.data else {}
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        if sse.event == "progress":
            return Progress.from_wire(body)
        if not sse.id or "event_id" not in body:
            return None
        self.last_id, self.last_type, self.failures = sse.id, body.get("type"), 0
        return Event.from_wire(body)
