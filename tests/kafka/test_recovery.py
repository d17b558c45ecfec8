"""A fleet recovers by itself: three worker processes and no reaper, real PostgreSQL and Kafka.

One worker is killed with SIGKILL and one is frozen with SIGSTOP while they hold jobs; the
remaining worker's loop rescues their expired leases (every worker does, fenced), so their
jobs run again and finish within two leases. The frozen worker, thawed, changes nothing.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import sqlalchemy as sa

from jobs.status import EventType
from tests.bus.helpers import edit, outbox_rows, per_job, statuses, wait_until
from tests.kafka.conftest import Fleet

pytestmark = pytest.mark.kafka
LEASE = 4.0


async def held_by(fleet: Fleet, pid: int) -> set[str]:
    async with fleet.c.db.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT key FROM jobs WHERE status = 'running' AND lease_owner LIKE :owner"),
            {"owner": f"%:{pid}:%"},
        )
        return {r[0] for r in rows}


async def test_a_fleet_with_no_reaper_recovers_a_killed_and_a_frozen_workers_jobs(
    fleet: Fleet,
) -> None:
    env = {
        "VIDJOBS_SLEEP_SECONDS": "1.0",
        "VIDJOBS_LEASE_SECONDS": str(LEASE),
        "VIDJOBS_HEARTBEAT_SECONDS": "0.5",
        "VIDJOBS_FLEET_SWEEP_SECONDS": "1",
    }
    workers = [
        await fleet.spawn(
            f"worker-{i}", "worker", "--executor", "sleep", "--concurrency", "2", **env
        )
        for i in range(3)
    ]
    relay = await fleet.spawn("relay", "relay")
    for proc in workers:
        await proc.wait_for("consuming", timeout=60)
    n = 24
    keys = [(await fleet.c.service.submit(fleet.tenant, edit(i))).job.key for i in range(n)]
    killed, frozen, survivor = workers

    async def both_hold_jobs() -> bool:
        return bool(await held_by(fleet, killed.proc.pid)) and bool(
            await held_by(fleet, frozen.proc.pid)
        )

    await wait_until(both_hold_jobs, timeout=60, what="both victims to hold jobs")
    killed.kill()
    frozen.proc.send_signal(signal.SIGSTOP)
    hit = time.monotonic()
    try:
        # What they still hold once stopped: a job one of them finished between the read
        # above and its signal was recorded by its own worker, not rescued.
        await asyncio.sleep(0.2)
        victims = await held_by(fleet, killed.proc.pid) | await held_by(fleet, frozen.proc.pid)
        assert victims, "the victims held jobs when they were stopped"

        async def victims_done() -> bool:
            async with fleet.c.db.engine.connect() as conn:
                rows = await conn.execute(
                    sa.text("SELECT key, status FROM jobs WHERE key = ANY(:keys)"),
                    {"keys": list(victims)},
                )
                return all(r[1] == "succeeded" for r in rows)

        # Two leases, plus the one second a rerun takes.
        await wait_until(victims_done, timeout=2 * LEASE + 1.0 + 5, what="the victims' jobs")
        recovered_in = time.monotonic() - hit
        assert recovered_in <= 2 * LEASE + 1.0 + 1.0, recovered_in

        async def all_done() -> bool:
            return (await statuses(fleet.c.db))["succeeded"] == n

        await wait_until(all_done, timeout=120, what="every job")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    await asyncio.sleep(LEASE / 2)  # the thawed worker tries to record its stale outcomes
    for proc in (frozen, survivor, relay):
        await proc.stop()
    assert (await statuses(fleet.c.db)) == {"succeeded": n}
    rows = await outbox_rows(fleet.c.db)
    assert set(per_job(rows, EventType.SUCCEEDED).values()) == {1}  # one outcome per job
    assert len(per_job(rows, EventType.SUCCEEDED)) == len(keys)
    rescued = {
        r.job_key
        for r in rows
        if r.type == EventType.REQUEUED and r.payload.get("reason") == "lease_expired"
    }
    assert victims <= rescued  # rescued by a worker: no reaper ran
