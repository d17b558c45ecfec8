"""`Client` and `AsyncClient`: the vidjobs HTTP API as Python calls.

Both take the server's URL and a tenant token, retry connection errors, 429 and 503 (with
the server's Retry-After), and give typed results (`Job`, `Event`, `Source`) or one
exception per error family (`vidjobs.errors`).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource
from tenacity import AsyncRetrying, Retrying

from vidjobs import _api, _http, _stream, _upload, errors
from vidjobs._output_calls import AsyncOutputCalls, OutputCalls
from vidjobs._webhook_calls import AsyncWebhookCalls, WebhookCalls
from vidjobs.models import BatchItem, Event, Job, Page, Progress, Source

DEFAULT_TIMEOUT = 30.0


def _jobs_page(body: dict[str, Any]) -> Page:
    return Page([Job.from_wire(j) for j in body["jobs"]], body.get("next_cursor"))


def _batch(body: dict[str, Any]) -> builtins.list[BatchItem]:
    items = []
    for item in body["results"]:
        status = int(item["status"])
        if "job" in item and item["job"] is not None:
            replayed = status == 200
            items.append(BatchItem(status, Job.from_wire(item["job"], replayed=replayed), None))
        else:
            items.append(BatchItem(status, None, errors.from_response(status, item, None)))
    return items


def _submitted(ans: _http.Answer) -> Job:
    return Job.from_wire(ans.body, replayed=ans.headers.get("Idempotent-Replayed") == "true")


class Client(WebhookCalls, OutputCalls):
    """The synchronous client. Use it as a context manager, or call `close()`."""

    def __init__(
        self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
        retries: _http.RetryPolicy | None = None, user_agent: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retries = retries or _http.RetryPolicy()
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers=_http.headers(token, user_agent),
            timeout=timeout, transport=transport,
        )
        self._storage: httpx.Client | None = None  # for presigned storage URLs, made on use

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        if self._storage is not None:
            self._storage.close()

    def _send(self, call: _http.Call) -> _http.Answer:
        for attempt in Retrying(**self.retries.tenacity_kwargs(call)):
            with attempt:
                try:
                    resp = self.http.request(
                        call.method, call.path, params=call.params, json=call.json,
                        headers=call.headers,
                    )
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
                return _http.answer(resp)
        raise AssertionError("unreachable")

    def submit(
        self, edit: dict[str, Any], *, on_duplicate: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit an edit. `job.replayed` is True when the key already had a job."""
        return _submitted(self._send(_api.submit(
            edit, on_duplicate=on_duplicate, idempotency_key=idempotency_key)))

    def submit_many(
        self, edits: builtins.list[dict[str, Any]], *, on_duplicate: str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[BatchItem]:
        """Submit up to 1,000 edits in one request; one answer per edit, in order (an
        invalid edit fails alone; in-batch duplicates get the first one's job)."""
        return _batch(self._send(_api.submit_many(
            edits, on_duplicate=on_duplicate, idempotency_key=idempotency_key)).body)

    def get(self, key: str) -> Job:
        return Job.from_wire(self._send(_api.get(key)).body)

    def list(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        return _jobs_page(self._send(_api.list_jobs(status, limit, cursor)).body)

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job (newest first), fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, key: str) -> Job:
        return Job.from_wire(self._send(_api.cancel(key)).body)

    def retry(self, key: str) -> Job:
        return Job.from_wire(self._send(_api.retry(key)).body)

    def events(self, key: str) -> builtins.list[Event]:
        return [Event.from_wire(e) for e in self._send(_api.events(key)).body["events"]]

    def wait(self, key: str, *, timeout: float = 3600.0) -> Job:
        """Until the job is succeeded, failed or cancelled: follows its event stream (polls
        with backoff against a server without streams). TimeoutError after `timeout` s
        (checked at each message; the server sends one at least every 15 s)."""
        deadline = time.monotonic() + timeout
        for _ in self.follow(key):
            if time.monotonic() >= deadline:
                break
        job = self.get(key)
        if not job.done:
            raise TimeoutError(f"job {key} is still {job.status} after {timeout:g} s")
        return job

    def follow(self, key: str) -> Iterator[Event | Progress]:
        """The job's events (from the first) and progress samples as they happen, until it
        ends. A dropped connection resumes after the last event (Last-Event-ID)."""
        state = _stream.Follow(key)
        while not state.ended:
            call = state.call()
            try:
                with self.http.stream(
                    call.method, call.path, params=call.params, headers=call.headers
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        _http.answer(resp)
                    if not state.check(resp):
                        yield from self._poll_events(key)
                        return
                    for sse in EventSource(resp).iter_sse():
                        if (item := state.read(sse)) is not None:
                            yield item
                state.closed()
            except httpx.TransportError as exc:
                state.failures += 1
                if state.failures >= self.retries.attempts:
                    raise _http.transport_error(exc) from exc
            if not state.ended:
                time.sleep(min(self.retries.max_wait, 0.2 * 2**state.failures))

    def _poll_events(self, key: str) -> Iterator[Event]:
        seen: set[str] = set()
        delay = _http.poll_delays()
        while True:
            for event in self.events(key):
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    yield event
            if self.get(key).done:
                return
            time.sleep(delay())

    def upload(self, path: str | Path, *, media_type: str = "application/octet-stream") -> Source:
        """Upload a local file as a source, straight to the server's storage (the server
        checks and stores it); use ``{"digest": source.digest}`` in an edit."""
        file = Path(path)
        size = file.stat().st_size
        made = self._send(_upload.create(size, media_type)).body
        for piece in _upload.pieces(made, size, self.http.base_url):
            self._put(file, piece)
        return Source.from_wire(self._send(_upload.complete(made["upload_id"])).body)

    def _put(self, file: Path, piece: _upload.Piece) -> None:
        """One range of the file to where the server said (the same bytes to the same
        place, so a broken connection may resend it)."""
        if piece.to_api:
            http = self.http
        else:
            if self._storage is None:
                self._storage = httpx.Client(timeout=self.http.timeout)
            http = self._storage
        for attempt in Retrying(**self.retries.tenacity_kwargs(_http.Call("PUT", piece.url))):
            with attempt:
                try:
                    resp = http.put(
                        piece.url, content=_upload.read_range(file, piece),
                        headers=_upload.put_headers(piece),
                    )
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
                _http.answer(resp)


class AsyncClient(AsyncWebhookCalls, AsyncOutputCalls):
    """The asyncio client: the same calls as `Client`, awaited."""

    def __init__(
        self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
        retries: _http.RetryPolicy | None = None, user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retries = retries or _http.RetryPolicy()
        self.http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=_http.headers(token, user_agent),
            timeout=timeout, transport=transport,
        )
        self._storage: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._storage is not None:
            await self._storage.aclose()

    async def _send(self, call: _http.Call) -> _http.Answer:
        async for attempt in AsyncRetrying(**self.retries.tenacity_kwargs(call)):
            with attempt:
                try:
                    resp = await self.http.request(
                        call.method, call.path, params=call.params, json=call.json,
                        headers=call.headers,
                    )
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
                return _http.answer(resp)
        raise AssertionError("unreachable")

    async def submit(
        self, edit: dict[str, Any], *, on_duplicate: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        return _submitted(await self._send(_api.submit(
            edit, on_duplicate=on_duplicate, idempotency_key=idempotency_key)))

    async def submit_many(
        self, edits: builtins.list[dict[str, Any]], *, on_duplicate: str | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[BatchItem]:
        return _batch((await self._send(_api.submit_many(
            edits, on_duplicate=on_duplicate, idempotency_key=idempotency_key))).body)

    async def get(self, key: str) -> Job:
        return Job.from_wire((await self._send(_api.get(key))).body)

    async def list(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        return _jobs_page((await self._send(_api.list_jobs(status, limit, cursor))).body)

    async def iter_jobs(
        self, *, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.list(status=status, limit=page_size, cursor=cursor)
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, key: str) -> Job:
        return Job.from_wire((await self._send(_api.cancel(key))).body)

    async def retry(self, key: str) -> Job:
        return Job.from_wire((await self._send(_api.retry(key))).body)

    async def events(self, key: str) -> builtins.list[Event]:
        body = (await self._send(_api.events(key))).body
        return [Event.from_wire(e) for e in body["events"]]

    # The same signature as Client.wait; asyncio.timeout around it works as well.
    async def wait(self, key: str, *, timeout: float = 3600.0) -> Job:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async for _ in self.follow(key):
            if time.monotonic() >= deadline:
                break
        job = await self.get(key)
        if not job.done:
            raise TimeoutError(f"job {key} is still {job.status} after {timeout:g} s")
        return job

    async def follow(self, key: str) -> AsyncIterator[Event | Progress]:
        state = _stream.Follow(key)
        while not state.ended:
            call = state.call()
            try:
                async with self.http.stream(
                    call.method, call.path, params=call.params, headers=call.headers
                ) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        _http.answer(resp)
                    if not state.check(resp):
                        async for event in self._poll_events(key):
                            yield event
                        return
                    async for sse in EventSource(resp).aiter_sse():
                        if (item := state.read(sse)) is not None:
                            yield item
                state.closed()
            except httpx.TransportError as exc:
                state.failures += 1
                if state.failures >= self.retries.attempts:
                    raise _http.transport_error(exc) from exc
            if not state.ended:
                await asyncio.sleep(min(self.retries.max_wait, 0.2 * 2**state.failures))

    async def _poll_events(self, key: str) -> AsyncIterator[Event]:
        seen: set[str] = set()
        delay = _http.poll_delays()
        while True:
            for event in await self.events(key):
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    yield event
            if (await self.get(key)).done:
                return
            await asyncio.sleep(delay())

    async def upload(
        self, path: str | Path, *, media_type: str = "application/octet-stream"
    ) -> Source:
        file = Path(path)
        size = (await asyncio.to_thread(file.stat)).st_size
        made = (await self._send(_upload.create(size, media_type))).body
        for piece in _upload.pieces(made, size, self.http.base_url):
            await self._put(file, piece)
        return Source.from_wire((await self._send(_upload.complete(made["upload_id"]))).body)

    async def _put(self, file: Path, piece: _upload.Piece) -> None:
        if piece.to_api:
            http = self.http
        else:
            if self._storage is None:
                self._storage = httpx.AsyncClient(timeout=self.http.timeout)
            http = self._storage
        call = _http.Call("PUT", piece.url)
        async for attempt in AsyncRetrying(**self.retries.tenacity_kwargs(call)):
            with attempt:
                try:
                    resp = await http.put(
                        piece.url, content=_upload.aread_range(file, piece),
                        headers=_upload.put_headers(piece),
                    )
                except httpx.TransportError as exc:
                    raise _http.transport_error(exc) from exc
                _http.answer(resp)


__all__ = ["AsyncClient", "Client", "errors"]
