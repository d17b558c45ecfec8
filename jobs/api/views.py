"""How jobs and events look on the wire. Server file paths are never shown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from jobs.models import Job, OutboxEvent
from jobs.status import JobStatus
from jobs.tasks import views as task_views
from jobs.tasks.chunkplan import DECISION_KEY
from jobs.tasks.graph import Member


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The canonical edit as stored, without the server-side paths of its inputs."""
    return {k: v for k, v in spec.items() if k not in ("inputs", DECISION_KEY)}


def job_view(job: Job, tasks: Sequence[Member] | None = None) -> dict[str, Any]:
    """A job as its tenant sees it. A job of several tasks (`tasks`: its tasks, when read)
    is "running" while it waits for them, and its progress is theirs."""
    error = None
    if job.error_code:
        error = {"code": job.error_code, "message": job.error_message}
    progress = job.progress
    if tasks is not None and job.status == JobStatus.WAITING:
        progress = task_views.progress(tasks)
    view: dict[str, Any] = {
        "key": job.key,
        "status": JobStatus.RUNNING.value if job.status == JobStatus.WAITING else job.status,
        "progress": round(progress, 4),
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
    if isinstance(job.spec.get(DECISION_KEY), dict):  # whether and why it was (not) chunked
        view["chunking"] = job.spec[DECISION_KEY]
    if job.role == "graph":
        links: dict[str, Any] = view["links"]
        single = bool((job.output or {}).get("digest"))  # a chunked edit's stitched file
        links["output"] = f"/v1/jobs/{job.key}/output" if single else None
        links["tasks"] = f"/v1/jobs/{job.key}/tasks"
        names = list(((job.output or {}).get("outputs") or {}).keys())
        links["outputs"] = {n: f"/v1/jobs/{job.key}/outputs/{n}" for n in names}
        if tasks is not None:
            view["tasks"] = task_views.summary(tasks)
    return view


def event_view(event: OutboxEvent) -> dict[str, Any]:
    payload = {k: v for k, v in event.payload.items() if k not in ("tenant_id", "job_id")}
    return {
        "event_id": event.event_id,
        "type": event.type,
        "created_at": _ts(event.created_at),
        "published": event.published_at is not None,
        "data": payload,
    }
