"""How jobs and events look on the wire. Server file paths are never shown."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobs.models import Job, OutboxEvent


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The canonical edit as stored, without the server-side paths of its inputs."""
    return {k: v for k, v in spec.items() if k != "inputs"}


def job_view(job: Job) -> dict[str, Any]:
    error = None
    if job.error_code:
        error = {"code": job.error_code, "message": job.error_message}
    return {
        "key": job.key,
        "status": job.status,
        "progress": round(job.progress, 4),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "labels": job.labels,
        "cancel_requested": job.cancel_requested,
        "error": error,
        "output": job.output,
        "spec": public_spec(job.spec),
        "run_after": _ts(job.run_after),
        "created_at": _ts(job.created_at),
        "updated_at": _ts(job.updated_at),
        "started_at": _ts(job.started_at),
        "finished_at": _ts(job.finished_at),
        "links": {
            "self": f"/v1/jobs/{job.key}",
            "events": f"/v1/jobs/{job.key}/events",
            "output": f"/v1/jobs/{job.key}/output" if job.output else None,
        },
    }


def event_view(event: OutboxEvent) -> dict[str, Any]:
    payload = {k: v for k, v in event.payload.items() if k not in ("tenant_id", "job_id")}
    return {
        "event_id": event.event_id,
        "type": event.type,
        "created_at": _ts(event.created_at),
        "published": event.published_at is not None,
        "data": payload,
    }
