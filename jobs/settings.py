"""One settings object, read once from the environment (prefix `VIDJOBS_`)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIDJOBS_", extra="ignore")

    data_dir: Path = Path(".vidjobs")
    # Unset: a SQLite file under data_dir. Otherwise a SQLAlchemy async URL
    # (postgresql+asyncpg://... or sqlite+aiosqlite:///...).
    database_url: str | None = None
    # Unset: the in-process bus (embedded mode).
    kafka_bootstrap: str | None = None
    kafka_topic: str = "vidjobs.job-events"
    kafka_partitions: int = Field(default=12, ge=1, le=1000)
    kafka_replication: int = Field(default=1, ge=1, le=10)
    kafka_worker_group: str = "vidjobs-workers"
    kafka_ledger_group: str = "vidjobs-ledger"
    # Relay: rows per batch, how often a standby tries the lock, poll fallback.
    relay_batch: int = Field(default=500, ge=1, le=10000)
    relay_standby_seconds: float = Field(default=1.0, gt=0, le=60)
    relay_poll_seconds: float = Field(default=1.0, gt=0, le=600)
    # With Kafka the database sweep only catches what a lost event left behind.
    fleet_sweep_seconds: float = Field(default=5.0, gt=0, le=3600)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Reaper housekeeping: processed-event ids and published outbox rows are pruned after these.
    processed_retention_hours: float = Field(default=7 * 24.0, gt=0)
    outbox_retention_hours: float = Field(default=30 * 24.0, gt=0)
    prune_batch: int = Field(default=1000, ge=1, le=100000)
    # A worker process serves Prometheus metrics on this port (0: off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Where blobs live: file:///abs/path (unset: <data_dir>/blobs) or s3://bucket/prefix, with
    # the endpoint below (or AWS_ENDPOINT_URL); credentials and region: the AWS variables.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_multipart_threshold_bytes: int = Field(default=64 * 1024**2, ge=5 * 1024**2)
    s3_part_size_bytes: int = Field(default=16 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    # POST /v1/sources (a body through the API, or a URL import): the largest accepted.
    source_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Direct uploads (POST /v1/uploads): the largest accepted, and how long its URL is valid.
    upload_max_bytes: int = Field(default=20 * 1024**3, ge=1)
    upload_url_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Retention (0: keep forever). Outputs: days after their job finished; then the job shows
    # `output.expired` and a duplicate submission runs it again. Uploads: hours after upload,
    # deleted once no live job references them. Both checked by the reaper.
    output_retention_days: float = Field(default=0.0, ge=0)
    upload_retention_hours: float = Field(default=0.0, ge=0)
    # URL imports (POST /v1/sources {"url"}): extra targets allowed (IPs, CIDRs, host:port;
    # they may be private and use plain http), and the time cap of one download.
    url_source_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    url_source_timeout_seconds: float = Field(default=600.0, gt=0, le=24 * 3600)
    # How long a presigned download URL (the 307 of GET /v1/jobs/{key}/output) is valid.
    download_url_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    # Directories that `{"path": ...}` sources may come from (colon or comma separated).
    source_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Also how soon a running job notices a cancel request: one UPDATE per second per job.
    heartbeat_seconds: float = Field(default=1.0, gt=0, le=3600)
    poll_seconds: float = Field(default=2.0, gt=0, le=600)
    retry_base_seconds: float = Field(default=2.0, ge=0, le=3600)
    retry_max_seconds: float = Field(default=300.0, ge=0, le=86400)
    default_max_attempts: int = Field(default=3, ge=1, le=100)
    idempotency_key_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    worker_concurrency: int = Field(default=2, ge=1, le=256)
    # How long the fixed-time test executor (`--executor sleep`) takes per job.
    sleep_seconds: float = Field(default=0.05, ge=0, le=3600)
    # Per tenant, per API process: a token bucket (requests/s and burst), and a cap on
    # pending+running jobs (a tenant's own `max_in_flight` overrides it). 0 turns either off.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    max_in_flight_per_tenant: int = Field(default=10_000, ge=0)

    # PostgreSQL connections per process: kept open, and allowed beyond that under bursts
    # (closed again when returned). Size the pool for the process's concurrency (an API
    # process: its concurrent requests) so a steady load never opens and closes connections.
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)

    api_url: str | None = None
    api_token: str | None = None

    @field_validator("url_source_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.replace(",", os.pathsep).split(os.pathsep)
            return [Path(p) for p in parts if p.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vidjobs.db').resolve()}"

    @property
    def resolved_source_roots(self) -> list[Path]:
        return [p.resolve() for p in self.source_roots]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
