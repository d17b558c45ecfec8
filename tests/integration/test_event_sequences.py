"""Every state change writes its event: a job's event list after cancels, a cancel request,
the worker honouring it and lease rescues is exactly the sequence of what happened.

Nothing else reads a job's events after a cancel or a rescue (the sweep re-claims a rescued
job anyway), so without these checks a transition that forgot its outbox row would pass.
"""

from __future__ import annotations

import asyncio

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import TenantRef


def edit(max_attempts: int = 2) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": 3, "end": 4}],
            "max_attempts": max_attempts,
        }
    )


async def sequence(service: JobService, tenant: TenantRef, key: str) -> list[tuple[str, str]]:
    """(event type, job status the event recorded) of one job, in outbox order."""
    events = await service.events(tenant, key)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert len({e.event_id for e in events}) == len(events)
    return [(e.type, e.payload["status"]) for e in events]


async def test_cancels_and_a_cancel_request_each_write_their_event(
    service: JobService, claims: ClaimService, tenant: TenantRef
) -> None:
    key = (await service.submit(tenant, edit())).job.key
    await service.cancel(tenant, key)  # pending -> cancelled
    await service.cancel(tenant, key)  # already cancelled: no change, no event
    await service.retry(tenant, key)
    [job] = await claims.claim_batch("w", 1)
    requested = await service.cancel(tenant, key)  # running: cancel requested
    assert requested.cancel_requested
    await service.cancel(tenant, key)  # requested already: no change, no event
    assert (await claims.heartbeat(job, 0.5)).cancel_requested
    await claims.cancel(job)  # the worker honours it: running -> cancelled
    assert await sequence(service, tenant, key) == [
        ("job.submitted", "pending"),
        ("job.cancelled", "cancelled"),
        ("job.requeued", "pending"),
        ("job.claimed", "running"),
        ("job.cancel_requested", "running"),
        ("job.cancelled", "cancelled"),
    ]


async def test_rescues_write_requeued_then_failed_when_attempts_run_out(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    key = (await service.submit(tenant, edit(max_attempts=2))).job.key
    short = ClaimService(db, settings.model_copy(update={"lease_seconds": 0.1}))
    for attempt in (1, 2):
        [job] = await short.claim_batch(f"w{attempt}", 1)
        assert job.attempts == attempt
        await asyncio.sleep(0.3)  # the worker went silent: its lease runs out
        [rescued] = await short.rescue_expired()
        assert rescued.key == key
    assert rescued.status == "failed" and rescued.error_code == "lease_expired"
    assert await sequence(service, tenant, key) == [
        ("job.submitted", "pending"),
        ("job.claimed", "running"),
        ("job.requeued", "pending"),
        ("job.claimed", "running"),
        ("job.failed", "failed"),
    ]
    events = await service.events(tenant, key)
    assert [e.payload.get("reason") for e in events[2::2]] == ["lease_expired", "lease_expired"]
