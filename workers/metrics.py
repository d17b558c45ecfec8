"""Prometheus metrics of the worker processes (the API's are in `jobs.api`).

Every process exposes the default registry: the API on `GET /metrics`, the others on
`--metrics-port`. Claims and outcomes are counted from the outbox events each process
commits (the after-commit hook), so they are counted once, where they happened.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.claims import ClaimService, Cycle
from jobs.models import Job
from jobs.outbox import Event
from jobs.outcomes import Outcome
from jobs.status import EventType

CLAIMS = Counter("vidjobs_claims_total", "Claims attempted by this process", ["result"])
OUTCOMES = Counter("vidjobs_job_outcomes_total", "Job state changes by outcome", ["outcome"])
JOB_SECONDS = Histogram(
    "vidjobs_job_duration_seconds",
    "Run time of jobs that finished (claim to finish, database clock)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
OUTBOX_BACKLOG = Gauge("vidjobs_outbox_backlog", "Outbox rows not yet published")
RELAY_LAG = Gauge("vidjobs_relay_lag_seconds", "Age of the oldest unpublished outbox row")
RELAY_PUBLISHED = Counter("vidjobs_relay_published_total", "Outbox rows published and marked")
RELAY_ACTIVE = Gauge("vidjobs_relay_active", "1 while this relay holds the relay lock")
CONSUMED = Counter(
    "vidjobs_events_consumed_total", "Bus events handled by consumers", ["group", "result"]
)
CONSUMER_LAG = Gauge("vidjobs_consumer_lag", "Records not yet fetched by this consumer", ["group"])
LEDGER_SECONDS = Counter(
    "vidjobs_ledger_media_seconds_total", "Media seconds added to tenants' usage"
)

_OUTCOME_OF = {
    EventType.SUCCEEDED.value: "succeeded",
    EventType.FAILED.value: "failed",
    EventType.RETRY_SCHEDULED.value: "retry_scheduled",
    EventType.CANCELLED.value: "cancelled",
}


def observe_events(events: Sequence[Event]) -> None:
    """Count claims won and job outcomes from the events a process just committed."""
    counts: dict[tuple[Counter, str], int] = {}
    for event in events:
        if event.type in (EventType.CLAIMED, EventType.TASK_CLAIMED):  # a task is claimed work
            slot = (CLAIMS, "won")
        elif event.type in _OUTCOME_OF:
            slot = (OUTCOMES, _OUTCOME_OF[event.type])
        elif event.type == EventType.REQUEUED and event.payload.get("reason") == "released":
            slot = (OUTCOMES, "released")
        else:
            continue
        counts[slot] = counts.get(slot, 0) + 1
    for (metric, label), n in counts.items():  # one labelled increment per kind and batch
        metric.labels(label).inc(n)


def observe_claim_lost() -> None:
    CLAIMS.labels("lost").inc()


class MeteredClaimService(ClaimService):
    """ClaimService that also records how long each job whose outcome it recorded ran."""

    async def complete(
        self,
        ended: Sequence[Outcome],
        owner: str,
        claim: int,
        *,
        conn: AsyncConnection | None = None,
    ) -> Cycle:
        cycle = await super().complete(ended, owner, claim, conn=conn)
        for row in cycle.recorded:
            if row is not None:
                _observe_duration(row)
        return cycle


def _observe_duration(job: Job) -> None:
    end = job.finished_at or job.updated_at
    if job.started_at is not None and end is not None:
        JOB_SECONDS.observe(max(0.0, (end - job.started_at).total_seconds()))


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a scrape target
    """Expose this process's metrics on `port` (no-op for 0)."""
    if port:
        start_http_server(port, addr=addr)


# --- webhooks (workers.webhooks) ------------------------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "vidjobs_webhook_attempts_total",
    "Webhook attempts by outcome: succeeded, retry (scheduled), exhausted, gone (410), lost",
    ["outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "vidjobs_webhook_attempt_seconds",
    "Duration of webhook attempts (DNS, connect, request, capped response)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
WEBHOOK_OWED = Gauge("vidjobs_webhook_owed", "Webhook deliveries owed (pending, incl. retries)")
WEBHOOK_OLDEST_OWED = Gauge(
    "vidjobs_webhook_oldest_owed_seconds", "Age of the oldest owed webhook delivery"
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "vidjobs_webhook_endpoints_disabled_total", "Endpoints disabled (410, or failing for days)"
)
