"""Typed views of what the server answers. Each keeps the raw dict for fields added later."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# A job in one of these states will not change again unless someone retries it.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as the server shows it (`GET /v1/jobs/{key}`)."""

    key: str
    status: str
    progress: float
    attempts: int
    max_attempts: int
    priority: int
    labels: dict[str, str]
    cancel_requested: bool
    error: JobError | None
    output: dict[str, Any] | None
    spec: dict[str, Any]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    # Set by submit: True when the server answered with an existing job for this key.
    replayed: bool = False

    @property
    def done(self) -> bool:
        """Succeeded, failed or cancelled: waiting longer changes nothing."""
        return self.status in TERMINAL

    @classmethod
    def from_wire(cls, body: dict[str, Any], *, replayed: bool = False) -> Job:
        error = body.get("error")
        return cls(
            key=body["key"],
            status=body["status"],
            progress=float(body.get("progress") or 0.0),
            attempts=int(body.get("attempts") or 0),
            max_attempts=int(body.get("max_attempts") or 0),
            priority=int(body.get("priority") or 0),
            labels=dict(body.get("labels") or {}),
            cancel_requested=bool(body.get("cancel_requested")),
            error=JobError(str(error.get("code")), str(error.get("message"))) if error else None,
            output=body.get("output"),
            spec=dict(body.get("spec") or {}),
            created_at=_time(body.get("created_at")),
            updated_at=_time(body.get("updated_at")),
            started_at=_time(body.get("started_at")),
            finished_at=_time(body.get("finished_at")),
            raw=body,
            replayed=replayed,
        )


@dataclass(frozen=True)
class Event:
    """One lifecycle event of a job (`GET /v1/jobs/{key}/events`)."""

    event_id: str
    type: str
    created_at: dt.datetime | None
    data: dict[str, Any]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Event:
        return cls(
            event_id=body["event_id"],
            type=body["type"],
            created_at=_time(body.get("created_at")),
            data=dict(body.get("data") or {}),
        )


@dataclass(frozen=True)
class Progress:
    """A progress sample of a running job, from a followed stream (not a stored event)."""

    key: str
    status: str
    progress: float

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Progress:
        return cls(str(body.get("key")), str(body.get("status")), float(body.get("progress") or 0))


@dataclass(frozen=True)
class Source:
    """An uploaded source: use ``{"digest": source.digest}`` in an edit."""

    digest: str
    size: int
    probe: dict[str, Any]

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Source:
        probe = dict(body.get("probe") or {})
        return cls(digest=body["digest"], size=int(body["size"]), probe=probe)


@dataclass(frozen=True)
class Task:
    """One task of a job (`GET /v1/jobs/{key}/tasks`): a simple job is its one task, "main".
    `reused` is true when the same tenant had already made it from the same bytes."""

    name: str
    key: str
    kind: str
    status: str
    attempts: int
    progress: float
    depends_on: list[str]
    reused: bool
    error: JobError | None
    output: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Task:
        error = body.get("error")
        return cls(
            name=str(body.get("name")), key=str(body["key"]), kind=str(body.get("kind")),
            status=str(body["status"]), attempts=int(body.get("attempts") or 0),
            progress=float(body.get("progress") or 0.0),
            depends_on=[str(d) for d in body.get("depends_on") or []],
            reused=bool(body.get("reused")),
            error=JobError(str(error.get("code")), str(error.get("message"))) if error else None,
            output=body.get("output"), raw=body,
        )


@dataclass(frozen=True)
class Playback:
    """A package's signed, expiring playback URLs (`GET /v1/jobs/{key}/playback`): `url` is
    the HLS master (the DASH MPD for a DASH package), `manifests` every manifest by kind,
    `thumbnails` the sprites' WebVTT index or None. No bearer token is needed to play them."""

    url: str
    expires_at: dt.datetime | None
    manifests: dict[str, str]
    thumbnails: str | None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Playback:
        return cls(
            url=str(body["url"]), expires_at=_time(body.get("expires_at")),
            manifests={str(k): str(v) for k, v in (body.get("manifests") or {}).items()},
            thumbnails=body.get("thumbnails"),
        )


@dataclass(frozen=True)
class Page:
    """One page of `list`; pass `next_cursor` back for the next (None: the last page)."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class BatchItem:
    """One answer of `submit_many`, in the order of the edits: `status` is 201 (created or
    run again), 200 (an existing job), 409 (rejected duplicate) or 422 (invalid); `job` is
    set unless the item failed, `error` is set when it did."""

    status: int
    job: Job | None
    error: Exception | None


@dataclass(frozen=True)
class Webhook:
    """A webhook endpoint. `secret` is only set in the answer that created or rotated it."""

    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    secret: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Webhook:
        return cls(
            id=str(body["id"]), url=str(body["url"]), events=list(body.get("events") or []),
            description=body.get("description"), enabled=bool(body.get("enabled", True)),
            secret=body.get("secret"), raw=body,
        )
