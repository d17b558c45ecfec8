"""Webhook endpoint management, for both clients: `Client` and `AsyncClient` inherit it.

Deliveries and attempts come back as the server's dicts; endpoints as `Webhook`.
"""

from __future__ import annotations

import builtins
from typing import Any

from vidjobs import _api, _http
from vidjobs.models import Webhook


class WebhookCalls:
    def _send(self, call: _http.Call) -> _http.Answer:
        raise NotImplementedError  # the client's own transport


    def create_webhook(
        self, url: str, events: builtins.list[str], *, description: str | None = None
    ) -> Webhook:
        """A new endpoint; its `secret` (whsec_...) is shown only in this answer."""
        return Webhook.from_wire(self._send(_api.create_webhook(url, events, description)).body)

    def webhooks(self) -> builtins.list[Webhook]:
        return [Webhook.from_wire(w) for w in self._send(_api.list_webhooks()).body["webhooks"]]

    def get_webhook(self, endpoint_id: str) -> Webhook:
        return Webhook.from_wire(self._send(_api.get_webhook(endpoint_id)).body)

    def update_webhook(self, endpoint_id: str, **changes: Any) -> Webhook:
        """Change `url`, `events`, `description` or `enabled`."""
        return Webhook.from_wire(self._send(_api.update_webhook(endpoint_id, changes)).body)

    def delete_webhook(self, endpoint_id: str) -> None:
        self._send(_api.delete_webhook(endpoint_id))

    def rotate_webhook_secret(
        self, endpoint_id: str, *, grace_seconds: float | None = None
    ) -> Webhook:
        """A new secret; the old one still signs for `grace_seconds` (the server's default)."""
        call = _api.rotate_webhook_secret(endpoint_id, grace_seconds)
        return Webhook.from_wire(self._send(call).body)

    def webhook_deliveries(
        self, endpoint_id: str, *, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        """`{"deliveries": [...], "next_before"}`, newest first, each with its attempts."""
        body: dict[str, Any] = self._send(
            _api.webhook_deliveries(endpoint_id, limit, before)).body
        return body

    def replay_delivery(self, endpoint_id: str, delivery_id: int) -> dict[str, Any]:
        """Send an event again (same webhook-id and body), as a new delivery."""
        body: dict[str, Any] = self._send(_api.replay_delivery(endpoint_id, delivery_id)).body
        return body

    def ping_webhook(self, endpoint_id: str) -> dict[str, Any]:
        """Queue a `webhook.test` delivery to the endpoint."""
        body: dict[str, Any] = self._send(_api.ping_webhook(endpoint_id)).body
        return body



class AsyncWebhookCalls:
    async def _send(self, call: _http.Call) -> _http.Answer:
        raise NotImplementedError  # the client's own transport

    async def create_webhook(
        self, url: str, events: builtins.list[str], *, description: str | None = None
    ) -> Webhook:
        call = _api.create_webhook(url, events, description)
        return Webhook.from_wire((await self._send(call)).body)

    async def webhooks(self) -> builtins.list[Webhook]:
        body = (await self._send(_api.list_webhooks())).body
        return [Webhook.from_wire(w) for w in body["webhooks"]]

    async def get_webhook(self, endpoint_id: str) -> Webhook:
        return Webhook.from_wire((await self._send(_api.get_webhook(endpoint_id))).body)

    async def update_webhook(self, endpoint_id: str, **changes: Any) -> Webhook:
        call = _api.update_webhook(endpoint_id, changes)
        return Webhook.from_wire((await self._send(call)).body)

    async def delete_webhook(self, endpoint_id: str) -> None:
        await self._send(_api.delete_webhook(endpoint_id))

    async def rotate_webhook_secret(
        self, endpoint_id: str, *, grace_seconds: float | None = None
    ) -> Webhook:
        call = _api.rotate_webhook_secret(endpoint_id, grace_seconds)
        return Webhook.from_wire((await self._send(call)).body)

    async def webhook_deliveries(
        self, endpoint_id: str, *, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        call = _api.webhook_deliveries(endpoint_id, limit, before)
        body: dict[str, Any] = (await self._send(call)).body
        return body

    async def replay_delivery(self, endpoint_id: str, delivery_id: int) -> dict[str, Any]:
        call = _api.replay_delivery(endpoint_id, delivery_id)
        body: dict[str, Any] = (await self._send(call)).body
        return body

    async def ping_webhook(self, endpoint_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self._send(_api.ping_webhook(endpoint_id))).body
        return body
