"""Tables (SQLModel). Migrations in `migrations/versions` must match these exactly.

Hot paths and their indexes:
- submission: unique (tenant_id, key)
- claim next: partial index on pending jobs by (tenant_id, priority DESC, run_after, id)
- rescue: partial index on running jobs by lease expiry
- relay: partial index on unpublished outbox rows by id
"""

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))


def _now_default() -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(
            UTCDateTime(), nullable=False, server_default=sa.func.current_timestamp()
        ),
    )


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    max_in_flight: int | None = Field(default=None)
    # At most this many of the tenant's jobs run at once (NULL: no cap; checked by each claim).
    max_running: int | None = Field(default=None)
    created_at: dt.datetime | None = _now_default()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=36)
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    prefix: str = Field(max_length=16)
    created_at: dt.datetime | None = _now_default()
    revoked_at: dt.datetime | None = _ts()


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "key", name="uq_jobs_tenant_key"),
        # Per tenant, the claim's order (priority DESC, run_after, id): a claim reads each
        # tenant's first due rows of the index instead of sorting every pending job.
        sa.Index(
            "ix_jobs_pending_due",
            "tenant_id",
            sa.column("priority").desc(),
            "run_after",
            "id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        # The running jobs, for the reaper. Not the lease: a heartbeat then changes no
        # indexed column and is a HOT update (migration 0004).
        sa.Index(
            "ix_jobs_running",
            "id",
            postgresql_where=sa.text("status = 'running'"),
            sqlite_where=sa.text("status = 'running'"),
        ),
        sa.Index("ix_jobs_tenant_status_id", "tenant_id", "status", "id"),
        # The console's jobs page: a tenant's newest jobs of any status (keyset by id).
        sa.Index("ix_jobs_tenant_id", "tenant_id", "id"),
        # The console's jobs page filtered by creation time (a window of a large backlog).
        sa.Index("ix_jobs_created_at", "created_at"),
        # The console's fleet page: what finished in the last hour.
        sa.Index(
            "ix_jobs_finished_at",
            "finished_at",
            postgresql_where=sa.text("finished_at IS NOT NULL"),
            sqlite_where=sa.text("finished_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    key: str = Field(max_length=80)
    status: str = Field(max_length=16)
    # "job": a client's job that is its own one task (every simple edit); "graph": a client's
    # job of several task rows (never claimed itself); "task": one of those task rows (key
    # `vt1_...`, claimed like a job, shared by the tenant's jobs that plan the same work).
    role: str = Field(
        default="job", sa_column=sa.Column(sa.String(8), nullable=False, server_default="job")
    )
    # Unfinished rows this one waits for (status `waiting`): dependencies, or a job's tasks.
    waiting: int = Field(
        default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0")
    )
    spec: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    labels: dict[str, str] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    priority: int = Field(default=0)
    attempts: int = Field(default=0)
    max_attempts: int = Field(default=3)
    run_after: dt.datetime | None = _ts(nullable=False)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: dt.datetime | None = _ts()
    fencing_token: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger(), nullable=False, default=0)
    )
    cancel_requested: bool = Field(default=False)
    progress: float = Field(default=0.0)
    output: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(JSONType, nullable=True)
    )
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    created_at: dt.datetime | None = _ts(nullable=False)
    updated_at: dt.datetime | None = _ts(nullable=False)
    started_at: dt.datetime | None = _ts()
    finished_at: dt.datetime | None = _ts()
    # W3C traceparent of the submission that (re)started this run, when tracing was on:
    # the worker's attempt spans continue that trace (migration 0010)
    traceparent: str | None = Field(default=None, max_length=55)


class TaskEdge(SQLModel, table=True):
    """`downstream_id` (a task, or a job of several tasks) waits for `upstream_id` (a task).

    A task's success lowers the `waiting` count of each of its downstream rows, in its own
    transaction; a shared task can have downstream rows of several jobs."""

    __tablename__ = "task_edges"

    upstream_id: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True))
    downstream_id: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True))


class JobTask(SQLModel, table=True):
    """A task of a job of several tasks, by its name in the job's plan."""

    __tablename__ = "job_tasks"
    __table_args__ = (sa.Index("ix_job_tasks_task", "task_id"),)

    job_id: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True))
    name: str = Field(primary_key=True, max_length=64)
    task_id: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    kind: str = Field(max_length=32)
    depends_on: list[str] = Field(sa_column=sa.Column(JSONType, nullable=False))
    publish_as: str | None = Field(default=None, max_length=100)
    # The task had already succeeded for this tenant when the job was planned (not re-run).
    reused: bool = Field(default=False)


class IdempotencyKey(SQLModel, table=True):
    """A client's `Idempotency-Key` header, bound to the job its first request made."""

    __tablename__ = "idempotency_keys"

    tenant_id: str = Field(primary_key=True, foreign_key="tenants.id", max_length=36)
    client_key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    job_key: str = Field(max_length=80)
    expires_at: dt.datetime | None = _ts(nullable=False, index=True)


class BatchAnswer(SQLModel, table=True):
    """The whole answer a batch submission with an `Idempotency-Key` got, for replays."""

    __tablename__ = "batch_answers"

    tenant_id: str = Field(primary_key=True, foreign_key="tenants.id", max_length=36)
    client_key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    # The answer's JSON text as sent (not JSONB: an answer may quote a client's NUL).
    answer: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    expires_at: dt.datetime | None = _ts(nullable=False, index=True)


class OutboxEvent(SQLModel, table=True):
    """One row per state change, written in the transaction of the change."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
        # A job's events in order (the job is found by tenant and key first).
        sa.Index("ix_outbox_job", "job_id", "id"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    # Random (gen_random_uuid / uuid4: 122 random bits), so unique without an index to
    # say so; nothing looks an event up by it (consumers keep their own processed ids).
    event_id: str = Field(max_length=36)
    tenant_id: str = Field(max_length=36)
    job_id: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    job_key: str = Field(max_length=80)
    type: str = Field(max_length=40)
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    created_at: dt.datetime | None = _ts(nullable=False)
    published_at: dt.datetime | None = _ts()


class ProcessedEvent(SQLModel, table=True):
    """Event ids a consumer has handled, recorded in the transaction of its effect."""

    __tablename__ = "processed_events"

    consumer: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=36)
    processed_at: dt.datetime | None = _ts(nullable=False, index=True)


class Blob(SQLModel, table=True):
    """A stored file (upload or output), addressed by content digest."""

    __tablename__ = "blobs"

    digest: str = Field(primary_key=True, max_length=80)
    size: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    media_type: str = Field(max_length=100)
    probe: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    created_at: dt.datetime | None = _now_default()


class BlobOwner(SQLModel, table=True):
    """A tenant that uploaded, imported or produced a digest. Only an owner may use a digest
    (as a source or watermark); to anyone else it looks exactly like an unknown one. Storage
    keeps one copy of identical bytes whatever the number of owners."""

    __tablename__ = "blob_owners"

    tenant_id: str = Field(primary_key=True, foreign_key="tenants.id", max_length=36)
    digest: str = Field(primary_key=True, max_length=80)
    created_at: dt.datetime | None = _now_default()


class SourceGrant(SQLModel, table=True):
    """A bucket prefix (`s3://bucket/prefix/`) whose objects a tenant may use as sources."""

    __tablename__ = "source_grants"

    tenant_id: str = Field(primary_key=True, foreign_key="tenants.id", max_length=36)
    prefix: str = Field(primary_key=True, max_length=1100)
    created_at: dt.datetime | None = _now_default()


class Upload(SQLModel, table=True):
    """A direct upload: the client sends the bytes straight to storage (a presigned URL, or
    the API itself on local storage), then asks vidjobs to verify and adopt them."""

    __tablename__ = "uploads"

    id: str = Field(primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=36)
    size: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    media_type: str = Field(max_length=100)
    # The S3 multipart upload id when the parts were presigned separately.
    multipart_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    digest: str | None = Field(default=None, max_length=80)  # set once completed
    created_at: dt.datetime | None = _now_default()
    expires_at: dt.datetime | None = _ts(nullable=False)
    completed_at: dt.datetime | None = _ts()


class Usage(SQLModel, table=True):
    """A tenant's finished work per UTC day, written by the usage ledger (once per event)."""

    __tablename__ = "usage"

    tenant_id: str = Field(primary_key=True, foreign_key="tenants.id", max_length=36)
    day: dt.date = Field(sa_column=sa.Column(sa.Date(), primary_key=True))
    jobs: int = Field(default=0)
    media_ms: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger(), nullable=False, default=0)
    )
    updated_at: dt.datetime | None = _ts(nullable=False)


class WebhookEndpoint(SQLModel, table=True):
    """A tenant's webhook endpoint (`/v1/webhooks`). The secrets sign; they are shown once."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (sa.Index("ix_webhook_endpoints_tenant", "tenant_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    url: str = Field(max_length=2000)
    events: list[str] = Field(sa_column=sa.Column(JSONType, nullable=False))
    description: str = Field(default="", max_length=500)
    enabled: bool = Field(default=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    # HMAC keys as `whsec_<base64>`; during a rotation's grace period the previous one also signs.
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: dt.datetime | None = _ts()
    # Set at the first failed attempt after a success; the endpoint is disabled when it is old.
    failing_since: dt.datetime | None = _ts()
    created_at: dt.datetime | None = _ts(nullable=False)
    updated_at: dt.datetime | None = _ts(nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One event owed to one endpoint. `event_id` is the webhook-id on every attempt and replay.

    pending: owed, sent when `next_attempt_at` is due (a claim pushes it past the attempt's
    timeout, so a dispatcher that died mid-attempt leaves it due again); succeeded; failed
    (retries exhausted, or the endpoint answered 410).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    endpoint_id: str = Field(max_length=40)
    tenant_id: str = Field(max_length=36)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=60)
    body: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    status: str = Field(max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime | None = _ts(nullable=False)
    replay_of: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))
    last_status_code: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime | None = _ts(nullable=False)
    updated_at: dt.datetime | None = _ts(nullable=False)
    finished_at: dt.datetime | None = _ts()


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery, recorded with the delivery's new state (one transaction)."""

    __tablename__ = "webhook_attempts"

    delivery_id: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True))
    attempt: int = Field(primary_key=True)
    started_at: dt.datetime | None = _ts(nullable=False)
    duration_ms: int = Field(default=0)
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=500)
    outcome: str = Field(max_length=16)


class Operator(SQLModel, table=True):
    """A console operator (`vidjobs operator create NAME`): sees every tenant and the fleet."""

    __tablename__ = "operators"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    # sha256 of the token (`vjo_...`), shown once and never stored.
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: dt.datetime | None = _now_default()
    revoked_at: dt.datetime | None = _ts()


class ConsoleSession(SQLModel, table=True):
    """A signed-in console browser: a tenant's or an operator's. The cookie holds the token;
    the row holds its sha256 and the CSRF token of the session's forms."""

    __tablename__ = "console_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    tenant_id: str | None = Field(default=None, max_length=36)
    # The tenant token it signed in with: revoking that token ends the session too.
    api_key_id: str | None = Field(default=None, max_length=36)
    operator_id: str | None = Field(default=None, max_length=36)
    csrf: str = Field(max_length=64)
    created_at: dt.datetime | None = _now_default()
    expires_at: dt.datetime | None = _ts(nullable=False, index=True)


metadata = SQLModel.metadata

# Rows are built with `model_construct` or `from_row` (no re-validation of typed database
# values), which skip SQLAlchemy's lazy mapper set-up: do it once, here.
sa.orm.configure_mappers()

M = TypeVar("M", bound=SQLModel)


def from_row(cls: type[M], row: Mapping[Any, Any]) -> M:
    """A table model from a whole row of its table, not validated again: what
    `cls.model_construct(**row)` makes (the same `__dict__`, fields set and pydantic
    attributes), in 40 % of the time. `model_construct` looks at every field's alias and
    default; a whole row has none missing, so its values go into the instance as they are.
    The worker builds one per claimed job. Anything but exactly the model's fields (a
    partial row, extra columns) goes through `model_construct`."""
    if row.keys() != cls.model_fields.keys() or cls.__pydantic_post_init__:
        return cls.model_construct(**row)  # type: ignore[return-value]
    obj: M = cls.__new__(cls)  # SQLModel's: the pydantic private attributes, no SQLAlchemy state
    obj.__dict__.update(row)
    object.__setattr__(obj, "__pydantic_fields_set__", set(row))
    return obj
