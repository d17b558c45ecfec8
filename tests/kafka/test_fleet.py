"""The whole fleet on real PostgreSQL and Kafka: a thousand jobs through three worker
processes, and a broker restart under a publishing relay."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobs.db import Database
from jobs.settings import Settings
from jobs.status import EventType
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from tests.bus.helpers import (
    delivered,
    edit,
    outbox_rows,
    per_job,
    read_topic,
    running,
    statuses,
    unpublished,
    usage_totals,
    wait_until,
)
from tests.kafka.conftest import Fleet
from tests.support.kafka import kafka_bootstrap, unique
from workers.bus.kafka import KafkaBus
from workers.compose import Components
from workers.relay import Relay

pytestmark = pytest.mark.kafka
SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.py"


async def test_a_thousand_jobs_through_kafka_with_three_worker_processes(fleet: Fleet) -> None:
    n = 1000
    worker_env = {"VIDJOBS_SLEEP_SECONDS": "0.01", "VIDJOBS_FLEET_SWEEP_SECONDS": "30"}
    workers = [
        await fleet.spawn(
            f"worker-{i}", "worker", "--executor", "sleep", "--concurrency", "8", **worker_env
        )
        for i in range(3)
    ]
    relay = await fleet.spawn("relay", "relay")
    ledger = await fleet.spawn("ledger", "ledger")
    for proc in workers:
        await proc.wait_for("consuming", timeout=60)
    await relay.wait_for("relay is active", timeout=60)
    await asyncio.sleep(3)  # let the group settle: one partition per worker

    service, tenant = fleet.c.service, fleet.tenant
    keys = [(await service.submit(tenant, edit(i))).job.key for i in range(n)]
    assert len(set(keys)) == n

    async def all_counted() -> bool:
        return await usage_totals(fleet.c.db, tenant.id) == (n, n * 1000)

    await wait_until(all_counted, timeout=240, what="every job to succeed and be counted")
    for proc in (*workers, relay, ledger):
        assert await proc.stop() == 0, "\n".join(proc.lines[-20:])

    assert (await statuses(fleet.c.db)) == {"succeeded": n}
    rows = await outbox_rows(fleet.c.db)
    assert set(per_job(rows, EventType.CLAIMED).values()) == {1}  # run exactly once
    assert set(per_job(rows, EventType.SUCCEEDED).values()) == {1}
    assert len(per_job(rows, EventType.SUCCEEDED)) == n
    seconds = sum(r.payload["output"]["duration_ms"] for r in rows if r.type == EventType.SUCCEEDED)
    assert await usage_totals(fleet.c.db, tenant.id) == (n, seconds)
    owners = collections.Counter(r.payload["owner"] for r in rows if r.type == EventType.CLAIMED)
    assert len(owners) == 3, owners  # all three worker processes took jobs


class PrivateKafka:
    """A second broker of our own (VIDJOBS_TEST_STATE), so restarting it disturbs no one."""

    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, "VIDJOBS_TEST_STATE": str(state)}
        self.env.pop("VIDJOBS_TEST_KAFKA_BOOTSTRAP", None)

    def run(self, command: str) -> str:
        out = subprocess.run(
            [sys.executable, str(SERVICES), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip()


@pytest.fixture
def private_kafka() -> object:
    kafka_bootstrap()  # skips (or fails in CI) when Kafka cannot run here at all
    kafka = PrivateKafka(Path(f"/tmp/vj-kafka-restart-{os.getpid()}-{uuid.uuid4().hex[:6]}"))
    bootstrap = kafka.run("kafka-start")
    yield kafka, bootstrap
    kafka.run("kafka-stop")


async def test_relay_recovers_by_itself_when_the_broker_restarts(
    private_kafka: tuple[PrivateKafka, str], pg_db_url: str, settings: Settings
) -> None:
    kafka, bootstrap = private_kafka
    topic = unique("restart")
    settings = settings.model_copy(update={"relay_poll_seconds": 0.3, "relay_batch": 20})
    bus = KafkaBus(bootstrap, topic, partitions=3, request_timeout=5.0, session_timeout=6.0)
    c = Components(settings=settings, db=Database(pg_db_url), blobs=LocalStorage(settings.data_dir))
    async with c.db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "acme")
    relay = Relay(c.db, bus, settings, wakeup=c.relay_wakeup)
    keys: list[str] = []  # what this test submitted: one job.submitted event each

    async def submit(count: int) -> None:
        for _ in range(count):
            keys.append((await c.service.submit(tenant, edit(len(keys)))).job.key)

    async def drained() -> bool:
        return await unpublished(c.db) == 0

    try:
        async with running(relay, timeout=60):
            await submit(20)
            await wait_until(drained, timeout=30, what="publishing before the restart")
            restart = asyncio.create_task(asyncio.to_thread(kafka.run, "kafka-restart"))
            while not restart.done():  # keep writing events while the broker goes and comes
                await submit(1)
                await asyncio.sleep(0.1)
            assert restart.result() == bootstrap
            await submit(20)
            await wait_until(drained, timeout=120, what="the relay to recover and catch up")
        records = await read_topic(bus, unique("reader"), len(keys), timeout=60)
        assert delivered(records) == {key: [EventType.SUBMITTED] for key in keys}
    finally:
        await c.close()
