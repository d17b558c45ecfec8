"""The delivery loop: claim owed deliveries from the database, POST them, record outcomes.

Nothing here depends on a message arriving: every owed delivery and retry is a pending row
with its due time, claimed with one conditional UPDATE (`FOR UPDATE SKIP LOCKED`), so any
number of dispatchers share the work and no attempt is sent by two of them. A claim pushes
the due time past the attempt's deadline: a dispatcher killed mid-attempt leaves the
delivery due again once that passes (the receiver may then see the same webhook-id twice,
which the spec expects). Outcome, attempt record and endpoint health are one transaction,
fenced by the attempt number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
import uuid
from typing import Any

from jobs.db import Database
from jobs.models import WebhookDelivery, WebhookEndpoint
from jobs.settings import Settings
from jobs.urlguard import Resolver
from jobs.webhooks import signing
from jobs.webhooks import statements as st
from jobs.webhooks.service import ENDPOINT_DISABLED, policy_of
from jobs.webhooks.views import endpoint_view, event_body, ts
from workers import metrics
from workers.wakeup import Wakeup
from workers.webhooks import http

log = logging.getLogger("vidjobs.webhooks")
LEASE_MARGIN_SECONDS = 5.0
# Attempts record their outcomes through this many transactions at once. An attempt holds no
# connection while it waits for the receiver, but `webhook_concurrency` answers arriving
# together would each take one, and the pool keeps every connection it once opened: its size
# would creep up to the high-water mark of such bursts. A record takes a few milliseconds,
# so a few slots carry hundreds of outcomes a second; the claim takes one more.
RECORDING_SLOTS = 4


def encode_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(endpoint: WebhookEndpoint, msg_id: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; during a rotation's grace period both secrets sign."""
    timestamp = int(time.time())
    keys = [endpoint.secret] + ([endpoint.previous_secret] if endpoint.previous_secret else [])
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(keys, msg_id, timestamp, body),
    }


class Sender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        wakeup: Wakeup | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.wakeup = wakeup or Wakeup()
        self.resolver = resolver
        self.policy = policy_of(settings)
        self.schedule = list(settings.webhook_retry_schedule)
        self.lease = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self.tasks: set[asyncio.Task[None]] = set()
        self.recording = asyncio.Semaphore(RECORDING_SLOTS)
        self.attempted = 0

    def retry_delay(self, attempt: int) -> float | None:
        """Seconds before attempt `attempt + 1`, or None when the schedule is used up."""
        if attempt >= len(self.schedule):
            return None
        base = self.schedule[attempt]
        jitter = self.settings.webhook_retry_jitter
        return max(0.0, base * random.uniform(1 - jitter, 1 + jitter))

    async def run(self, stop: asyncio.Event) -> None:
        self.wakeup.bind()
        last_gauges = 0.0
        try:
            while not stop.is_set():
                claimed = 0
                try:
                    claimed = await self.tick()
                    if time.monotonic() - last_gauges > 5:
                        last_gauges = time.monotonic()
                        await self.report_owed()
                except Exception as exc:  # the database: back off, the rows stay owed
                    log.warning("webhook claim failed, will retry: %s", exc)
                    await self._wait(stop, 1.0)
                    continue
                if claimed == 0 or len(self.tasks) >= self.settings.webhook_concurrency:
                    await self._wait(stop, self.settings.webhook_poll_seconds)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Until woken, stopped or `seconds` pass. Both waiters are cancelled after: a
        leftover wakeup waiter would swallow the next notification."""
        if stop.is_set():
            return
        waiters = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self.wakeup.wait(seconds)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def tick(self) -> int:
        """Claim as many due deliveries as there are free slots and start their attempts."""
        free = self.settings.webhook_concurrency - len(self.tasks)
        if free <= 0:
            return 0
        async with self.db.transaction() as conn:
            rows = await st.claim_due_deliveries(conn, free, self.lease)
            eps = await st.select_endpoints_by_ids(conn, [r.endpoint_id for r in rows])
        for row in rows:
            endpoint = eps.get(row.endpoint_id)
            if endpoint is None:
                continue
            task = asyncio.create_task(self.attempt(row, endpoint))
            self.tasks.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.wakeup.notify()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook attempt failed to record: %s", task.exception())

    async def attempt(self, row: WebhookDelivery, endpoint: WebhookEndpoint) -> None:
        body = encode_body(row.body)
        headers = signed_headers(endpoint, row.event_id, body)
        started = dt.datetime.now(dt.UTC)
        outcome = await http.post(
            endpoint.url,
            headers,
            body,
            policy=self.policy,
            time_limit=self.settings.webhook_timeout_seconds,
            max_body_bytes=self.settings.webhook_max_response_bytes,
            resolver=self.resolver,
        )
        self.attempted += 1
        metrics.WEBHOOK_ATTEMPT_SECONDS.observe(outcome.duration_ms / 1000)
        for attempt in range(3):  # the database may blip; the lease covers a short wait
            try:
                async with self.recording:
                    label = await self.record(row, endpoint, outcome, started)
                break
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("recording a webhook attempt failed, retrying: %s", exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        metrics.WEBHOOK_DELIVERIES.labels(label).inc()

    async def record(
        self,
        row: WebhookDelivery,
        endpoint: WebhookEndpoint,
        outcome: http.Outcome,
        started: dt.datetime,
    ) -> str:
        """The attempt's outcome, the delivery's next state and the endpoint's health."""
        attempt = row.attempts
        retry_in: float | None = None
        if outcome.ok:
            status, label = st.SUCCEEDED, "succeeded"
        elif outcome.status_code == 410:
            status, label = st.FAILED, "gone"
        else:
            retry_in = self.retry_delay(attempt)
            if retry_in is None:
                status, label = st.FAILED, "exhausted"
            else:
                status, label = st.PENDING, "retry"
                if outcome.retry_after is not None:
                    retry_in = outcome.retry_after
        async with self.db.transaction() as conn:
            recorded = await st.finish_attempt_if_current(
                conn,
                row.id or 0,
                attempt,
                status=status,
                retry_in=retry_in,
                status_code=outcome.status_code,
                error=outcome.error,
                started_at=started,
                duration_ms=outcome.duration_ms,
                outcome=label,
            )
            if not recorded:  # claimed again meanwhile, or deleted: not ours to record
                return "lost"
            if outcome.ok:
                if endpoint.failing_since is not None:  # as of the claim; else nothing to clear
                    await st.clear_endpoint_failing(conn, endpoint.id)
                return label
            reason = None
            if outcome.status_code == 410:
                reason = "the endpoint answered 410 Gone"
            else:
                failing = await st.mark_endpoint_failing(conn, endpoint.id)
                limit = self.settings.webhook_disable_after_seconds
                if failing is not None and failing >= limit:
                    reason = f"every attempt failed for {failing / 3600:.1f} h"
            if reason is not None:
                disabled = await st.disable_endpoint_if_enabled(conn, endpoint.id, reason)
                if disabled is not None:
                    await self._announce_disabled(conn, disabled)
        return label

    async def _announce_disabled(self, conn: Any, endpoint: WebhookEndpoint) -> None:
        """A `webhook.endpoint.disabled` event to the tenant's other subscribed endpoints."""
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)
        metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
        others = await st.select_enabled_endpoints_for_event(
            conn, endpoint.tenant_id, ENDPOINT_DISABLED
        )
        event_id = str(uuid.uuid4())
        data = endpoint_view(endpoint)
        body = event_body(ENDPOINT_DISABLED, ts(endpoint.updated_at), data)
        await st.insert_deliveries(
            conn,
            [
                {
                    "endpoint_id": other.id,
                    "tenant_id": endpoint.tenant_id,
                    "event_id": event_id,
                    "event_type": ENDPOINT_DISABLED,
                    "body": body,
                }
                for other in others
            ],
        )

    async def report_owed(self) -> None:
        async with self.db.reader.connect() as conn:
            count, age = await st.select_owed(conn)
        metrics.WEBHOOK_OWED.set(count)
        metrics.WEBHOOK_OLDEST_OWED.set(age)
