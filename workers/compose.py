"""The composition root: builds the database, services, API and loops from settings."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential

from jobs.api import ApiState, Probe, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.outbox import Event
from jobs.service import EditCheck, JobService, SourceCheck
from jobs.settings import Settings
from jobs.status import WORK_EVENTS
from jobs.storage import Storage, open_storage
from jobs.tenants import create_tenant, issue_token, tenant_by_name, tenant_for_token
from migrations import upgrade
from workers import metrics
from workers.executor import Executor, SleepExecutor
from workers.runner import Runner
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs")
CREDENTIALS = "credentials.json"


@dataclass
class Components:
    settings: Settings
    db: Database
    blobs: Storage
    wakeup: Wakeup = field(default_factory=Wakeup)
    # Woken by every committed event: the relay of this process publishes it at once.
    relay_wakeup: Wakeup = field(default_factory=Wakeup)
    service: JobService = field(init=False)
    claims: ClaimService = field(init=False)
    check_edit: EditCheck | None = None
    check_source: SourceCheck | None = None

    def __post_init__(self) -> None:
        self.service = JobService(
            self.db,
            self.settings,
            after_commit=self._after_commit,
            check_edit=self.check_edit,
            check_source=self.check_source,
        )
        self.claims = metrics.MeteredClaimService(
            self.db, self.settings, after_commit=self._after_commit
        )

    def _after_commit(self, events: Sequence[Event]) -> None:
        if any(e.type in WORK_EVENTS for e in events):
            self.wakeup.notify()
        if events:
            self.relay_wakeup.notify()
        metrics.observe_events(events)

    def runner(self, executor: Executor, concurrency: int) -> Runner:
        """The worker loop every worker process runs (`vidjobs worker`, `vidjobs up`)."""
        return Runner(
            self.claims,
            executor,
            self.blobs,
            self.settings,
            concurrency=concurrency,
            wakeup=self.wakeup,
            shutdown_grace=self.settings.shutdown_grace_seconds,
        )

    def app(self, probe: Probe | None = None) -> FastAPI:
        state = ApiState(
            db=self.db,
            service=self.service,
            settings=self.settings,
            blobs=self.blobs,
            probe=probe,
            max_upload_bytes=self.settings.source_max_bytes,
        )
        return create_app(state)

    async def close(self) -> None:
        try:
            await self.blobs.close()
            await self.service.close()
        finally:
            await self.db.dispose()


def build(settings: Settings, *, with_ffmpeg_checks: bool = False) -> Components:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pool: dict[str, int] = {}
    if not settings.resolved_database_url.startswith("sqlite"):
        pool = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
    db = Database(settings.resolved_database_url, **pool)
    blobs = open_storage(settings)
    check, source_check = None, None
    if with_ffmpeg_checks:
        check, source_check = ffmpeg_edit_check(), ffmpeg_source_check()
    return Components(
        settings=settings, db=db, blobs=blobs, check_edit=check, check_source=source_check
    )


def ffmpeg_source_check() -> SourceCheck | None:
    """Preflight path sources at submission with the ffmpeg prober (results cached)."""
    try:
        from workers.ffmpeg import preflight
    except ImportError:
        return None
    from jobs.errors import InvalidRequest, PermanentError

    passed: set[tuple[str, int, int, bool]] = set()

    async def check(where: str, path: Path, image_ok: bool) -> None:
        st = os.stat(path)  # one stat, cheaper than a thread hop
        ident = (str(path), st.st_size, st.st_mtime_ns, image_ok)
        if ident in passed:
            return
        try:
            await preflight(path, allow_image=image_ok, label=where)
        except PermanentError as exc:
            raise InvalidRequest(
                exc.message,
                details=[
                    {
                        "path": where,
                        "message": exc.message,
                        "allowed": "a readable video file within the server's limits",
                    }
                ],
            ) from None
        if len(passed) > 10_000:
            passed.clear()
        passed.add(ident)

    return check


def ffmpeg_edit_check() -> EditCheck | None:
    try:
        from workers.ffmpeg.executor import make_edit_check
    except ImportError:
        return None
    check: EditCheck = make_edit_check()
    return check


def make_executor(name: str, settings: Settings) -> Executor:
    if name == "sleep":
        return SleepExecutor(seconds=settings.sleep_seconds)
    from workers.ffmpeg.executor import FfmpegExecutor

    executor: Executor = FfmpegExecutor()
    return executor


def make_probe() -> Probe | None:
    try:
        from workers.ffmpeg.probe import probe_upload
    except ImportError:
        return None
    probe: Probe = probe_upload
    return probe


async def migrate(db: Database, storage: Storage | None = None) -> None:
    """The schema, and an S3 store's bucket (created when it does not exist yet)."""
    await upgrade(db.engine)
    create_bucket = getattr(storage, "create_bucket", None)
    if create_bucket is None:
        return
    # The object store may still be starting (a fleet started at once): retry for a minute.
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True
    ):
        with attempt:
            await create_bucket()


async def local_credentials(components: Components) -> dict[str, str]:
    """The embedded mode's tenant and token, kept in the data dir (mode 0600)."""
    path = components.settings.data_dir / CREDENTIALS
    saved: dict[str, Any] = {}
    if path.is_file():
        saved = json.loads(path.read_text())
    async with components.db.transaction() as conn:
        token = saved.get("token")
        if token and await tenant_for_token(conn, token) is not None:
            return {k: str(v) for k, v in saved.items()}
        tenant = await tenant_by_name(conn, "default")
        if tenant is None:
            tenant, token = await create_tenant(conn, "default")
        else:
            token = await issue_token(conn, tenant.id)
    creds = {"tenant": tenant.name, "token": token}
    write_credentials(components.settings.data_dir, creds)
    return creds


def write_credentials(data_dir: Path, creds: dict[str, str]) -> None:
    path = data_dir / CREDENTIALS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f)
