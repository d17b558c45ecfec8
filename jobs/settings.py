"""One settings object, read once from the environment (prefix `VIDJOBS_`)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The embedded mode's API URL, tenant and token, kept in the data dir by `vidjobs up`.
CREDENTIALS = "credentials.json"


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
    # Any process serves Prometheus metrics on this port (0: off). The API also answers
    # GET /metrics unless api_metrics is off; with metrics_token set it asks for that bearer.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    api_metrics: bool = True
    metrics_token: str | None = Field(default=None, min_length=16)
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
    # Playback URLs (GET /v1/jobs/{key}/playback): how long they are valid, the HMAC key
    # they are signed with (unset: a random key kept in the data dir; a fleet's API
    # processes must share one), and whether segments on S3 are 307s to presigned URLs
    # (the bucket then needs a CORS rule for browser players) instead of streamed.
    playback_url_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    playback_secret: str | None = Field(default=None, min_length=32)
    playback_redirect: bool = False
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
    # The API's connection timeouts (hostile clients): a request head must arrive within
    # HTTP_HEADER_TIMEOUT_SECONDS of the connection or of the previous response; a body may
    # stall at most HTTP_BODY_READ_TIMEOUT_SECONDS between chunks (then 408, connection
    # closed, temp file removed); an idle keep-alive connection is closed after
    # HTTP_KEEP_ALIVE_SECONDS.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    worker_concurrency: int = Field(default=2, ge=1, le=256)
    # Each worker process keeps the inputs it verified (blobs, pinned S3 sources) on its local
    # scratch disk, by digest, up to this many bytes, so a chunked edit's tasks and a ladder's
    # rungs fetch their source once per process (`workers.inputcache`). 0: fetch every time.
    input_cache_bytes: int = Field(default=4 * 1024**3, ge=0)
    # ffmpeg's limits per run: wall clock, address space, largest file written; and the longest
    # source accepted (preflight refuses longer ones).
    ffmpeg_timeout_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    ffmpeg_memory_mib: int = Field(default=4096, ge=256, le=1024 * 1024)
    ffmpeg_max_output_mib: int = Field(default=16 * 1024, ge=1, le=1024 * 1024 * 1024)
    max_source_duration_seconds: float = Field(default=4 * 3600.0, gt=0, le=7 * 86400)
    # Encoder threads per edit encode (`-threads N`; x264 then runs N threads). Unset:
    # ffmpeg's default (one per core). 1 with one pinned core per worker: bench.chunked.
    ffmpeg_encoder_threads: int | None = Field(default=None, ge=1, le=64)
    # Chunked encoding: `chunking: auto` chunks a source longer than this (jobs.chunking).
    chunk_min_seconds: float = Field(default=120.0, ge=0, le=7 * 86400)
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

    # json (one object a line) or console; unset: console on a terminal, json otherwise.
    log_format: Literal["json", "console"] | None = None
    # Webhooks (jobs.webhooks, workers.webhooks). The retry schedule is the Standard Webhooks
    # one: seconds before attempt 1, 2, ...; its length is the number of attempts.
    kafka_webhooks_group: str = "vidjobs-webhooks"
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [
            0.0,
            5.0,
            300.0,
            1800.0,
            7200.0,
            18000.0,
            36000.0,
            50400.0,
            72000.0,
            86400.0,
        ]
    )
    webhook_retry_jitter: float = Field(default=0.1, ge=0, le=1)
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    # An endpoint whose attempts have failed (no success in between) for this long is disabled.
    webhook_disable_after_seconds: float = Field(default=5 * 24 * 3600.0, gt=0)
    webhook_secret_grace_seconds: float = Field(default=24 * 3600.0, ge=0, le=30 * 24 * 3600)
    webhook_concurrency: int = Field(default=32, ge=1, le=1024)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=600)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0, le=16 * 1024 * 1024)
    # SSRF guard (jobs.urlguard): plain http, and private/loopback/link-local addresses, are
    # refused unless allowed; the allowlist holds host names or CIDR networks.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Live streams (SSE): how often a stream looks for new events, and the keep-alive comment.
    stream_poll_seconds: float = Field(default=0.25, gt=0, le=60)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0, le=600)

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

    @field_validator("database_url", mode="after")
    @classmethod
    def _driver_url(cls, value: str | None) -> str | None:
        return None if value is None else driver_url(value)
    @field_validator("webhook_retry_schedule", "webhook_allowlist", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not value or any(v < 0 for v in value):
            raise ValueError("a non-empty comma-separated list of delays in seconds, each >= 0")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vidjobs.db').resolve()}"

    @property
    def resolved_source_roots(self) -> list[Path]:
        return [p.resolve() for p in self.source_roots]


# The URL forms platforms hand out, and the async driver each one means here.
_SCHEMES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def driver_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean asyncpg (whose SSL option is `ssl`, not libpq's
    `sslmode`), `sqlite://` means aiosqlite; any other scheme is refused by name."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        allowed = "postgresql://, postgres://, postgresql+asyncpg://, sqlite:///, sqlite+aiosqlite:///"
        raise ValueError(f"scheme {scheme[:40]!r} is not supported; use one of {allowed}")
    driver = _SCHEMES[scheme.lower()]
    if driver.startswith("postgresql"):
        base, q, query = rest.partition("?")
        params = [("ssl" if k == "sslmode" else k, v) for k, _, v in
                  (part.partition("=") for part in query.split("&") if part)]
        rest = base + (q + "&".join(f"{k}={v}" for k, v in params) if params else "")
    return f"{driver}://{rest}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
