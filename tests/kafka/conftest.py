"""Fleet fixtures: a real PostgreSQL database and a Kafka topic per test, and processes.

Every test here needs both services; it skips (or fails with VIDJOBS_REQUIRE_SERVICES=1)
when either is missing. Fleet processes run as real `vidjobs` subprocesses, so killing one
is a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobs.db import Database
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from tests.support.kafka import delete_topic, kafka_bootstrap, unique
from workers.bus.kafka import KafkaBus
from workers.compose import Components

PARTITIONS = 3
pytestmark = pytest.mark.kafka


class Proc:
    """A `vidjobs` subprocess whose log lines are collected as they come."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(name, proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_for(self, text: str, timeout: float = 30) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not self.saw(text):
                    if self.proc.returncode is not None:
                        break
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        if not self.saw(text):
            tail = "\n".join(self.lines[-30:])
            raise AssertionError(f"{self.name} never logged {text!r}; last lines:\n{tail}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 20) -> int | None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)
        return self.proc.returncode


@dataclasses.dataclass
class Fleet:
    url: str
    bootstrap: str
    settings: Settings
    c: Components
    tenant: TenantRef
    bus: KafkaBus
    env: dict[str, str]
    procs: list[Proc] = dataclasses.field(default_factory=list)

    async def spawn(self, name: str, *args: str, **env: str) -> Proc:
        proc = await Proc.start(name, list(args), {**self.env, **env})
        self.procs.append(proc)
        return proc


@pytest.fixture
def fleet_db(pg_db_url: str) -> str:
    kafka_bootstrap()
    return pg_db_url


@pytest.fixture
async def fleet(fleet_db: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Fleet]:
    bootstrap = kafka_bootstrap()
    topic = unique("fleet")
    settings = settings.model_copy(
        update={
            "database_url": fleet_db,
            "kafka_bootstrap": bootstrap,
            "kafka_topic": topic,
            "kafka_partitions": PARTITIONS,
            "kafka_worker_group": unique("workers"),
            "kafka_ledger_group": unique("ledger"),
            "relay_poll_seconds": 0.5,
            "relay_standby_seconds": 0.3,
        }
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")},
        "VIDJOBS_DATABASE_URL": fleet_db,
        "VIDJOBS_KAFKA_BOOTSTRAP": bootstrap,
        "VIDJOBS_KAFKA_TOPIC": topic,
        "VIDJOBS_KAFKA_PARTITIONS": str(PARTITIONS),
        "VIDJOBS_KAFKA_WORKER_GROUP": settings.kafka_worker_group,
        "VIDJOBS_KAFKA_LEDGER_GROUP": settings.kafka_ledger_group,
        "VIDJOBS_DATA_DIR": str(settings.data_dir),
        "VIDJOBS_SOURCE_ROOTS": ":".join(str(p) for p in settings.source_roots),
        "VIDJOBS_RELAY_POLL_SECONDS": "0.5",
        "VIDJOBS_RELAY_STANDBY_SECONDS": "0.3",
        "VIDJOBS_LEASE_SECONDS": "30",
        "VIDJOBS_HEARTBEAT_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    bus = KafkaBus(bootstrap, topic, partitions=PARTITIONS, session_timeout=6.0)
    await bus.ensure_topic()
    blobs = LocalStorage(settings.data_dir / "blobs")
    blobs.ensure_scratch()
    c = Components(settings=settings, db=Database(fleet_db), blobs=blobs)
    async with c.db.transaction() as conn:
        tenant, _ = await create_tenant(conn, "acme")
    f = Fleet(fleet_db, bootstrap, settings, c, tenant, bus, env)
    try:
        yield f
    finally:
        for proc in f.procs:
            await proc.stop()
        await c.close()
        await delete_topic(bootstrap, topic)


@pytest.fixture
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parents[2]
