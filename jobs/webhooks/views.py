"""How endpoints, deliveries and attempts look on the wire (secrets only when issued)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobs.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def endpoint_view(ep: WebhookEndpoint, *, secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": ep.id,
        "url": ep.url,
        "events": list(ep.events),
        "description": ep.description,
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "failing_since": ts(ep.failing_since),
        "previous_secret_expires_at": ts(ep.previous_secret_expires_at),
        "created_at": ts(ep.created_at),
        "updated_at": ts(ep.updated_at),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def attempt_view(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "at": ts(a.started_at),
        "status_code": a.status_code,
        "duration_ms": a.duration_ms,
        "error": a.error,
        "outcome": a.outcome,
    }


def delivery_view(dl: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": dl.id,
        "endpoint_id": dl.endpoint_id,
        "event_id": dl.event_id,
        "type": dl.event_type,
        "status": dl.status,
        "attempt_count": dl.attempts,
        "next_attempt_at": ts(dl.next_attempt_at) if dl.status == "pending" else None,
        "last_status_code": dl.last_status_code,
        "last_error": dl.last_error,
        "replay_of": dl.replay_of,
        "created_at": ts(dl.created_at),
        "finished_at": ts(dl.finished_at),
        "attempts": [attempt_view(a) for a in attempts],
    }


def event_body(event_type: str, timestamp: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload: what happened, when, and the object it happened to."""
    return {"type": event_type, "timestamp": timestamp, "data": data}
