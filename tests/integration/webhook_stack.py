"""A webhook pipeline in one process: service -> outbox -> relay -> bus -> dispatcher -> HTTP.

Used by the delivery tests on SQLite and a real PostgreSQL (in-process bus), with real HTTP
receivers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy as sa
import standardwebhooks

from jobs.db import Database
from jobs.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from jobs.webhooks.statements import attempts, deliveries, endpoints
from tests.support.receiver import Received
from workers.bus import InProcessBus
from workers.compose import Components
from workers.relay import Relay
from workers.webhooks.dispatcher import Dispatcher

FAST = {
    "webhook_allow_http": True,
    "webhook_allow_private": True,
    "webhook_retry_schedule": [0.0, 0.2, 0.2, 0.2, 0.2, 0.2],
    "webhook_retry_jitter": 0.0,
    "webhook_timeout_seconds": 1.0,
    "webhook_poll_seconds": 0.1,
    "relay_poll_seconds": 0.1,
    "stream_poll_seconds": 0.05,
}


def edit(i: int) -> EditRequest:
    return EditRequest.model_validate(
        {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": i, "end": i + 1}]}
    )


def verify(secret: str, got: Received) -> dict[str, Any]:
    """The reference library's verification (raises WebhookVerificationError if it fails)."""
    payload = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert isinstance(payload, dict)
    return payload


@dataclasses.dataclass
class Hooks:
    c: Components
    bus: InProcessBus
    tenant: TenantRef
    token: str
    settings: Settings
    api: httpx.AsyncClient

    @property
    def db(self) -> Database:
        return self.c.db

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def endpoint(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        r = await self.api.post(
            "/v1/webhooks",
            json={"url": url, "events": events or ["job.submitted"]},
            headers=self.auth(),
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def submit(self, i: int) -> str:
        return (await self.c.service.submit(self.tenant, edit(i))).job.key

    def dispatcher(self, **kw: Any) -> Dispatcher:
        return Dispatcher(self.db, self.bus, self.settings, wakeup=self.c.webhook_wakeup, **kw)

    @contextlib.asynccontextmanager
    async def running(self, *extra: Any) -> AsyncIterator[None]:
        stop = asyncio.Event()
        loops = [Relay(self.db, self.bus, self.settings, wakeup=self.c.relay_wakeup), *extra]
        tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)

    async def deliveries(self) -> list[WebhookDelivery]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(sa.select(deliveries).order_by(deliveries.c.id))).mappings()
            return [WebhookDelivery.model_construct(**r) for r in rows]

    async def attempts(self) -> list[WebhookAttempt]:
        stmt = sa.select(attempts).order_by(attempts.c.delivery_id, attempts.c.attempt)
        async with self.db.engine.connect() as conn:
            return [
                WebhookAttempt.model_construct(**r) for r in (await conn.execute(stmt)).mappings()
            ]

    async def endpoint_row(self, endpoint_id: str) -> WebhookEndpoint:
        async with self.db.engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id)))
                .mappings()
                .one()
            )
        return WebhookEndpoint.model_construct(**row)


@contextlib.asynccontextmanager
async def hooks_on(url: str, settings: Settings, **overrides: Any) -> AsyncIterator[Hooks]:
    settings = settings.model_copy(update={**FAST, **overrides})
    blobs = LocalStorage(settings.data_dir / "blobs")
    await blobs.ensure()
    c = Components(settings=settings, db=Database(url), blobs=blobs)
    async with c.db.transaction() as conn:
        tenant, token = await create_tenant(conn, "acme")
    transport = httpx.ASGITransport(app=c.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
        yield Hooks(c, InProcessBus(settings.kafka_topic, 3), tenant, token, settings, api)
    await c.close()
