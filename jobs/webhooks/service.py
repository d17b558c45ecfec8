"""The transactions behind `/v1/webhooks`: endpoints, rotation, deliveries, replay, ping.

Every read and change names the tenant, so another tenant's endpoint or delivery is not
found, exactly like a missing one.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobs import urlguard
from jobs.db import Database, db_now
from jobs.errors import InvalidRequest, VidjobsError
from jobs.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from jobs.settings import Settings
from jobs.status import EventType
from jobs.tenants import TenantRef
from jobs.webhooks import signing
from jobs.webhooks import statements as st
from jobs.webhooks.views import event_body, ts

ENDPOINT_DISABLED = "webhook.endpoint.disabled"
TEST_EVENT = "webhook.test"
EVENT_TYPES = frozenset({*(t.value for t in EventType), ENDPOINT_DISABLED})


class WebhookNotFound(VidjobsError):
    """No such endpoint or delivery for this tenant (another tenant's looks the same)."""

    code = "not_found"
    http_status = 404


def _check_events(value: list[str]) -> list[str]:
    unknown = [v for v in value if v != "*" and v not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event type {unknown[0]!r}; allowed: '*' or " + ", ".join(sorted(EVENT_TYPES))
        )
    return sorted(set(value))


Events = Annotated[list[Annotated[str, Field(max_length=60)]], Field(min_length=1, max_length=50)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=urlguard.MAX_URL_LENGTH)
    events: Events = ["*"]
    description: str = Field(default="", max_length=500)

    _events = field_validator("events")(_check_events)


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=urlguard.MAX_URL_LENGTH)
    events: Events | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_events(value)


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How long the old secret keeps signing beside the new one (default: the setting).
    grace_seconds: float | None = Field(default=None, ge=0, le=30 * 24 * 3600)


def policy_of(settings: Settings) -> urlguard.Policy:
    return urlguard.Policy(
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private,
        allowlist=tuple(settings.webhook_allowlist),
    )


def _not_found(what: str, ident: object) -> WebhookNotFound:
    return WebhookNotFound(f"no webhook {what} {str(ident)[:60]!r}")


class WebhookService:
    def __init__(
        self, db: Database, settings: Settings, *, wake: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.policy = policy_of(settings)
        self.wake = wake

    async def _check_url(self, url: str) -> None:
        await urlguard.resolve(url, self.policy)

    async def create(self, tenant: TenantRef, req: EndpointCreate) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its secret (shown to the caller this once)."""
        await self._check_url(req.url)
        secret = signing.new_secret()
        values: dict[str, Any] = {
            "id": "ep_" + secrets.token_hex(16),
            "tenant_id": tenant.id,
            "url": req.url,
            "events": req.events,
            "description": req.description,
            "enabled": True,
            "secret": secret,
        }
        async with self.db.transaction() as conn:
            return await st.insert_endpoint(conn, values), secret

    async def endpoints(self, tenant: TenantRef) -> list[WebhookEndpoint]:
        async with self.db.reader.connect() as conn:
            return await st.select_endpoints_of_tenant(conn, tenant.id)

    async def get(self, tenant: TenantRef, endpoint_id: str) -> WebhookEndpoint:
        async with self.db.reader.connect() as conn:
            ep = await st.select_endpoint(conn, tenant.id, endpoint_id)
        if ep is None:
            raise _not_found("endpoint", endpoint_id)
        return ep

    async def update(
        self, tenant: TenantRef, endpoint_id: str, req: EndpointPatch
    ) -> WebhookEndpoint:
        values: dict[str, Any] = req.model_dump(exclude_none=True)
        if req.url is not None:
            await self._check_url(req.url)
        if req.enabled:  # re-enabled by hand: a fresh start
            values.update(disabled_reason=None, failing_since=None)
        async with self.db.transaction() as conn:
            if values:
                ep = await st.update_endpoint(conn, tenant.id, endpoint_id, values)
            else:
                ep = await st.select_endpoint(conn, tenant.id, endpoint_id)
        if ep is None:
            raise _not_found("endpoint", endpoint_id)
        if req.enabled:
            self._wake()
        return ep

    async def delete(self, tenant: TenantRef, endpoint_id: str) -> None:
        async with self.db.transaction() as conn:
            if not await st.delete_endpoint_and_deliveries(conn, tenant.id, endpoint_id):
                raise _not_found("endpoint", endpoint_id)

    async def rotate_secret(
        self, tenant: TenantRef, endpoint_id: str, req: RotateSecret
    ) -> tuple[WebhookEndpoint, str]:
        grace = self.settings.webhook_secret_grace_seconds
        if req.grace_seconds is not None:
            grace = req.grace_seconds
        secret = signing.new_secret()
        async with self.db.transaction() as conn:
            ep = await st.rotate_endpoint_secret(conn, tenant.id, endpoint_id, secret, grace)
        if ep is None:
            raise _not_found("endpoint", endpoint_id)
        return ep, secret

    async def deliveries(
        self, tenant: TenantRef, endpoint_id: str, *, limit: int, before: int | None
    ) -> tuple[list[WebhookDelivery], dict[int, list[WebhookAttempt]]]:
        async with self.db.reader.connect() as conn:
            if await st.select_endpoint(conn, tenant.id, endpoint_id) is None:
                raise _not_found("endpoint", endpoint_id)
            rows = await st.select_deliveries_page(conn, tenant.id, endpoint_id, before, limit)
            tries = await st.select_attempts(conn, [r.id or 0 for r in rows])
        return rows, tries

    async def replay(
        self, tenant: TenantRef, endpoint_id: str, delivery_id: int
    ) -> WebhookDelivery:
        """Send a delivery's event again: a new delivery, same webhook-id and body."""
        async with self.db.transaction() as conn:
            ep = await st.select_endpoint(conn, tenant.id, endpoint_id)
            original = await st.select_delivery(conn, tenant.id, endpoint_id, delivery_id)
            if ep is None or original is None:
                raise _not_found("delivery", delivery_id)
            if not ep.enabled:
                raise InvalidRequest(
                    f"endpoint {endpoint_id} is disabled ({ep.disabled_reason}): enable it first",
                    details=[{"path": "enabled", "message": "false", "allowed": "true"}],
                )
            (row,) = await st.insert_deliveries(
                conn,
                [
                    {
                        "endpoint_id": ep.id,
                        "tenant_id": tenant.id,
                        "event_id": original.event_id,
                        "event_type": original.event_type,
                        "body": original.body,
                        "replay_of": original.id,
                    }
                ],
            )
        self._wake()
        return row

    async def ping(self, tenant: TenantRef, endpoint_id: str) -> WebhookDelivery:
        """A `webhook.test` event for this endpoint alone (sent even if not subscribed)."""
        async with self.db.transaction() as conn:
            ep = await st.select_endpoint(conn, tenant.id, endpoint_id)
            if ep is None:
                raise _not_found("endpoint", endpoint_id)
            now = (await conn.execute(sa.select(db_now()))).scalar_one()
            data = {"endpoint_id": ep.id, "message": "a test event from vidjobs"}
            (row,) = await st.insert_deliveries(
                conn,
                [
                    {
                        "endpoint_id": ep.id,
                        "tenant_id": tenant.id,
                        "event_id": str(uuid.uuid4()),
                        "event_type": TEST_EVENT,
                        "body": event_body(TEST_EVENT, ts(now), data),
                    }
                ],
            )
        self._wake()
        return row

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake()
