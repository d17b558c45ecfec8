"""PostgreSQL goes down and comes back: the API answers 503 with Retry-After, never 500 and
never hangs; workers wait and resume by themselves. Uses a private PostgreSQL cluster so
stopping it cannot disturb other tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from migrations import upgrade
from tests.support.databases import pg_url
from workers.executor import SleepExecutor
from workers.reaper import Reaper
from workers.runner import Runner
from workers.wakeup import Wakeup

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.py"


class PrivatePostgres:
    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, "VIDJOBS_TEST_STATE": str(state)}
        self.env.pop("VIDJOBS_TEST_DATABASE_URL", None)

    def _run(self, command: str) -> str:
        out = subprocess.run([sys.executable, str(SERVICES), command], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def start(self) -> str:
        return self._run("postgres-start")

    def stop(self) -> None:
        self._run("postgres-stop")


@pytest.fixture
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, str]]:
    pg_url()  # skips (or fails in CI) when PostgreSQL is not available at all
    pg = PrivatePostgres(Path(f"/tmp/vj-degrade-{os.getpid()}"))
    url = pg.start()
    yield pg, url
    pg.stop()


async def test_api_answers_503_while_postgres_is_down_and_workers_resume(
    private_pg: tuple[PrivatePostgres, str], settings: Settings
) -> None:
    pg, url = private_pg
    db = Database(url)
    await upgrade(db.engine)
    async with db.transaction() as conn:
        tenant, token = await create_tenant(conn, "weather")
    wakeup = Wakeup()
    service = JobService(db, settings, after_commit=lambda _e: wakeup.notify())
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=LocalStorage(settings.data_dir / "blobs")))
    runner = Runner(ClaimService(db, settings), SleepExecutor(0.01), LocalStorage(settings.data_dir / "blobs"), settings, wakeup=wakeup)
    reaper = Reaper(ClaimService(db, settings), interval=0.2)
    stop = asyncio.Event()
    loops = [asyncio.create_task(runner.run(stop)), asyncio.create_task(reaper.run(stop))]
    edit = {"source": {"path": "clip.mp4"}}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}) as http:
        key = (await http.post("/v1/jobs", json=edit)).json()["key"]
        await asyncio.to_thread(pg.stop)
        for method, path in [("POST", "/v1/jobs"), ("GET", f"/v1/jobs/{key}"), ("GET", "/v1/jobs"), ("GET", "/readyz")]:
            started = time.monotonic()
            r = await http.request(method, path, json=edit if method == "POST" else None)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["Retry-After"].isdigit()
            assert time.monotonic() - started < 8, f"{path} hung"
        await asyncio.sleep(1.0)  # the loops keep failing to reach the database...
        assert not any(t.done() for t in loops), "a worker loop died while the database was down"
        await asyncio.to_thread(pg.start)
        # ...and pick up by themselves once it is back.
        req = EditRequest.model_validate({"source": {"path": "clip.mp4"}, "operations": [{"op": "mute"}]})
        async with asyncio.timeout(30):
            while True:
                try:
                    second = await service.submit(tenant, req)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            while (await service.get(tenant, second.job.key)).status != "succeeded":
                await asyncio.sleep(0.1)
            while (await service.get(tenant, key)).status != "succeeded":
                await asyncio.sleep(0.1)
        assert (await http.get("/readyz")).status_code == 200
    stop.set()
    await asyncio.gather(*loops)
    await db.dispose()
