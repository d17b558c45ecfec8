"""One bus per test (in-process, or a real Kafka topic of its own), and whole pipelines."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from tests.support.databases import PgTemplates, SqliteTemplate
from tests.support.kafka import delete_topic, kafka_bootstrap, unique
from workers.bus import Bus, InProcessBus
from workers.compose import Components

PARTITIONS = 3


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The same test body runs against the in-process bus and against Apache Kafka."""
    topic = unique("topic")
    if request.param == "memory":
        yield InProcessBus(topic, PARTITIONS)
        return
    from workers.bus.kafka import KafkaBus

    bootstrap = kafka_bootstrap()
    kafka = KafkaBus(bootstrap, topic, partitions=PARTITIONS, session_timeout=6.0)
    await kafka.ensure_topic()
    yield kafka
    await delete_topic(bootstrap, topic)


@pytest.fixture
def group() -> str:
    return unique("group")


# --- a whole pipeline: database, service, claims, bus --------------------------------------


@dataclasses.dataclass
class Stack:
    """What one process of the fleet has: components on a database, and the bus."""

    bus: Bus
    c: Components
    tenant: TenantRef
    settings: Settings
    kind: str

    @property
    def db(self) -> Database:
        return self.c.db

    @property
    def service(self) -> JobService:
        return self.c.service

    def components(self) -> Components:
        """Another process on the same database and bus (its own engine and signals)."""
        other = Components(settings=self.settings, db=Database(self.db.url), blobs=self.c.blobs)
        return other


@pytest.fixture(
    params=[
        "memory-sqlite",
        "memory-postgres",
        pytest.param("kafka-postgres", marks=pytest.mark.kafka),
    ]
)
def stack_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(bus kind, fresh migrated database URL); the fixtures that copy templates are sync."""
    bus_kind, db_kind = request.param.split("-")
    if bus_kind == "kafka":
        kafka_bootstrap()
    if db_kind == "sqlite":
        tpl: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield bus_kind, tpl.new_database(tmp_path)
        return
    pg: PgTemplates = request.getfixturevalue("pg_templates")
    url = pg.new_database()
    yield bus_kind, url
    pg.drop(url)


@pytest.fixture
async def stack(stack_url: tuple[str, str], settings: Settings) -> AsyncIterator[Stack]:
    bus_kind, url = stack_url
    topic = unique("topic")
    settings = settings.model_copy(
        update={
            "kafka_topic": topic,
            "kafka_worker_group": unique("workers"),
            "kafka_ledger_group": unique("ledger"),
            "relay_poll_seconds": 0.2,
            "relay_standby_seconds": 0.2,
            "relay_batch": 50,
            "fleet_sweep_seconds": 3600.0,
        }
    )
    bus: Bus
    if bus_kind == "memory":
        bus = InProcessBus(topic, PARTITIONS)
    else:
        from workers.bus.kafka import KafkaBus

        bootstrap = kafka_bootstrap()
        bus = KafkaBus(bootstrap, topic, partitions=PARTITIONS, session_timeout=6.0)
    blobs = LocalStorage(settings.data_dir / "blobs")
    blobs.ensure_scratch()
    c = Components(settings=settings, db=Database(url), blobs=blobs)
    async with c.db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "acme")
    yield Stack(bus=bus, c=c, tenant=tenant, settings=settings, kind=f"{bus_kind}:{c.db.dialect}")
    await c.close()
    if bus_kind == "kafka":
        await delete_topic(kafka_bootstrap(), topic)
