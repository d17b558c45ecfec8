"""Outbox rows as bus messages: key = job key, event id and type in the headers too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.models import OutboxEvent
from workers.bus.base import Message, Record

EVENT_ID = "event_id"
EVENT_TYPE = "type"
TRACEPARENT = "traceparent"  # W3C trace context of the job's submission, when it was traced


def message_for(event: OutboxEvent) -> Message:
    body = {
        "event_id": event.event_id,
        "type": event.type,
        "tenant_id": event.tenant_id,
        "job_id": event.job_id,
        "job_key": event.job_key,
        "outbox_id": event.id,
        "created_at": event.created_at.isoformat() if event.created_at else None,
        "payload": event.payload,
    }
    headers = {EVENT_ID: event.event_id, EVENT_TYPE: event.type}
    traceparent = (event.payload or {}).get(TRACEPARENT)
    if isinstance(traceparent, str):
        headers[TRACEPARENT] = traceparent
    return Message(
        key=event.job_key,
        value=json.dumps(body, separators=(",", ":"), sort_keys=True).encode(),
        headers=headers,
    )


@dataclass(frozen=True)
class BusEvent:
    """An event as a consumer reads it back."""

    event_id: str
    type: str
    tenant_id: str
    job_key: str
    created_at: str | None
    payload: dict[str, Any]

    @classmethod
    def from_record(cls, record: Record) -> BusEvent:
        body = json.loads(record.value)
        return cls(
            event_id=str(body["event_id"]),
            type=str(body["type"]),
            tenant_id=str(body["tenant_id"]),
            job_key=str(body["job_key"]),
            created_at=body.get("created_at"),
            payload=dict(body.get("payload") or {}),
        )


def event_type(record: Record) -> str | None:
    """The event type from the headers, without parsing the body (cheap filtering)."""
    return record.headers.get(EVENT_TYPE)
