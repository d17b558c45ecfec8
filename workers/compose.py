"""The composition root: builds the database, services, API and loops from settings.

The API (FastAPI, the routes, the console) and the migrations (alembic) are imported only
by what uses them: a worker, relay or reaper never does, and a restarted worker is back
claiming sooner (its start is what recovery waits for when every worker was killed).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, stop_after_delay, wait_exponential

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.outbox import Event
from jobs.service import EditCheck, JobService, PlanCheck, SourceCheck
from jobs.settings import CREDENTIALS, Settings, get_settings
from jobs.status import WORK_EVENTS
from jobs.storage import Storage, open_storage
from jobs.tenants import create_tenant, issue_token, tenant_by_name, tenant_for_token
from workers import metrics
from workers.executor import Executor, ExecutorRegistry, SleepExecutor
from workers.runner import Runner
from workers.wakeup import Wakeup

if TYPE_CHECKING:
    from fastapi import FastAPI

    from jobs.api import Probe

log = logging.getLogger("vidjobs")

# `vidjobs up`'s relay waits this long after a wake-up, so a job's submitted and claimed
# events go in one pass (its worker is woken in-process, not by the bus): a relay pass less
# per job on SQLite's one write lock, and dispatch p50 6.5 -> 6 ms in bench.dispatch.
EMBEDDED_RELAY_LINGER = 0.01


@dataclass
class Components:
    settings: Settings
    db: Database
    blobs: Storage
    wakeup: Wakeup = field(default_factory=Wakeup)
    # Woken by every committed event: the relay of this process publishes it at once.
    relay_wakeup: Wakeup = field(default_factory=Wakeup)
    # Woken when the API queues a webhook delivery (replay, test ping): the embedded dispatcher.
    webhook_wakeup: Wakeup = field(default_factory=Wakeup)
    service: JobService = field(init=False)
    claims: ClaimService = field(init=False)
    check_edit: EditCheck | None = None
    check_source: SourceCheck | None = None
    check_plan: PlanCheck | None = None

    def __post_init__(self) -> None:
        self.service = JobService(
            self.db,
            self.settings,
            after_commit=self._after_commit,
            check_edit=self.check_edit,
            check_source=self.check_source,
            check_plan=self.check_plan,
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
        from jobs import console
        from jobs.api import ApiState, create_app
        from jobs.webhooks.service import WebhookService

        state = ApiState(
            db=self.db,
            service=self.service,
            settings=self.settings,
            blobs=self.blobs,
            probe=probe,
            max_upload_bytes=self.settings.source_max_bytes,
        )
        app = create_app(state)
        console.install(app)
        app.state.webhooks = WebhookService(self.db, self.settings, wake=self.webhook_wakeup.notify)
        return app

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
    check, source_check, plan_check = None, None, None
    if with_ffmpeg_checks:
        check, source_check = ffmpeg_edit_check(), ffmpeg_source_check(settings)
        plan_check = ffmpeg_plan_check()
    return Components(
        settings=settings,
        db=db,
        blobs=blobs,
        check_edit=check,
        check_source=source_check,
        check_plan=plan_check,
    )


def serve_app() -> FastAPI:
    """The API `vidjobs serve` runs, from the settings; with `--workers N` each uvicorn
    process calls this itself (a factory: no state crosses processes)."""
    from workers.logs import setup

    settings = get_settings()
    setup(False, settings.log_format)
    c = build(settings, with_ffmpeg_checks=True)
    return c.app(make_probe(c.settings))


def ffmpeg_source_check(settings: Settings) -> SourceCheck | None:
    """Preflight path sources at submission with the ffmpeg prober (results cached)."""
    try:
        from workers.ffmpeg import Limits, preflight
    except ImportError:
        return None
    limits = Limits.from_settings(settings)
    from jobs.errors import InvalidRequest, PermanentError

    passed: dict[tuple[str, int, int, bool], dict[str, Any]] = {}

    async def check(where: str, path: Path, image_ok: bool) -> dict[str, Any] | None:
        st = os.stat(path)  # one stat, cheaper than a thread hop
        ident = (str(path), st.st_size, st.st_mtime_ns, image_ok)
        if ident in passed:
            return passed[ident]
        try:
            # Audio-only files pass here (they may feed an audio output); the executor
            # refuses one for a video output when it runs.
            probe = await preflight(
                path, limits, allow_image=image_ok, allow_audio=not image_ok, label=where
            )
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
        passed[ident] = probe.metadata()
        return passed[ident]

    return check


def ffmpeg_plan_check() -> PlanCheck | None:
    """The edit against its sources' probes at submission (frame geometry, audio)."""
    try:
        from workers.ffmpeg.precheck import check_plan
    except ImportError:
        return None
    check: PlanCheck = check_plan
    return check


def ffmpeg_edit_check() -> EditCheck | None:
    try:
        from workers.ffmpeg.executor import make_edit_check
    except ImportError:
        return None
    check: EditCheck = make_edit_check()
    return check


# The task kinds the sleep executor also runs (the ffmpeg executors' kinds below).
SLEEP_TASK_KINDS = (
    "rendition", "package", "sprites", "chunk", "audio", "stitch",
    "rung-chunk", "rung-audio", "rung-stitch",
)  # fmt: skip


def make_executor(name: str, settings: Settings) -> ExecutorRegistry:
    """The worker's executors by task kind ("edit": every simple job and named output).
    Other kinds (rendition, package, sprites; chunk, audio, stitch; rung-chunk, rung-audio,
    rung-stitch) register beside it."""
    if name == "sleep":  # every kind the same fixed-time way: jobs of tasks at scale
        sleep = SleepExecutor(seconds=settings.sleep_seconds)
        return ExecutorRegistry(sleep, **dict.fromkeys(SLEEP_TASK_KINDS, sleep))
    from workers.ffmpeg import packaging_executors
    from workers.ffmpeg.chunked import chunked_executors
    from workers.ffmpeg.executor import FfmpegExecutor
    from workers.ffmpeg.probecache import ProbeCache
    from workers.ffmpeg.run import Limits
    from workers.ffmpeg.rungchunks import rung_chunk_executors

    limits = Limits.from_settings(settings)
    probes = ProbeCache()  # one per process: every kind reuses a source's probe
    edit = FfmpegExecutor(limits, probes=probes)
    kinds = {**packaging_executors(limits, probes=probes), **chunked_executors(edit)}
    kinds |= rung_chunk_executors(limits, probes=probes)
    return ExecutorRegistry(edit, **kinds)


def make_probe(settings: Settings | None = None) -> Probe | None:
    """The upload prober, under the settings' limits (the defaults without settings)."""
    try:
        from workers.ffmpeg.probe import probe_upload
        from workers.ffmpeg.run import Limits
    except ImportError:
        return None
    limits = Limits.from_settings(settings) if settings is not None else None
    probe: Probe = functools.partial(probe_upload, limits=limits)
    return probe


async def migrate(db: Database, storage: Storage | None = None) -> None:
    """The schema, and an S3 store's bucket (created when it does not exist yet)."""
    from migrations import upgrade

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


async def run_embedded(
    settings: Settings,
    host: str,
    port: int,
    concurrency: int,
    executor: str,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    quiet: bool = False,
) -> None:
    """`vidjobs up`: migrate, then the API, relay, bus-driven worker, ledger and reaper in
    one process, until `stop` (default: SIGTERM/SIGINT)."""
    import uvicorn
    from rich.console import Console

    from workers import loop
    from workers.bus import make_bus
    from workers.consumer import BusWorker
    from workers.http_server import server_config
    from workers.ledger import Ledger
    from workers.reaper import Reaper
    from workers.relay import Relay
    from workers.webhooks.dispatcher import Dispatcher

    c = build(settings, with_ffmpeg_checks=executor == "ffmpeg")
    await migrate(c.db, c.blobs)
    creds = await local_credentials(c)
    config = server_config(
        c.app(make_probe(c.settings)),
        host,
        port,
        settings,
        log_level="warning",
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    stop = stop or loop.stop_on_signals()
    runner = c.runner(make_executor(executor, settings), concurrency)
    reaper_loop = Reaper(c.claims, c.blobs, wakeup=c.wakeup)
    # The in-process bus (Kafka if VIDJOBS_KAFKA_BOOTSTRAP is set): the same relay, bus-driven
    # runner and ledger as the fleet, with a sweep every poll interval behind them.
    bus = make_bus(settings)
    relay_loop = Relay(c.db, bus, settings, wakeup=c.relay_wakeup, linger=EMBEDDED_RELAY_LINGER)
    worker_loop = BusWorker(
        runner, bus, settings.kafka_worker_group, sweep_seconds=settings.poll_seconds
    )
    ledger_loop = Ledger(c.db, bus, settings.kafka_ledger_group)
    webhooks_loop = Dispatcher(c.db, bus, settings, wakeup=c.webhook_wakeup)
    server_task = asyncio.create_task(server.serve())
    while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    if server_task.done():
        await server_task
        raise SystemExit(f"could not start the API on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    url = f"http://{host}:{bound}"
    write_credentials(settings.data_dir, {**creds, "url": url})
    if not quiet:
        console = Console()
        console.print(f"[bold green]vidjobs is up[/] at {url}")
        console.print(f"token: {creds['token']}  (saved in {settings.data_dir / CREDENTIALS})")
    if ready is not None:
        ready.set()
    loops = (relay_loop, worker_loop, ledger_loop, reaper_loop, webhooks_loop)
    tasks = [asyncio.create_task(part.run(stop)) for part in loops]
    await stop.wait()
    server.should_exit = True
    await asyncio.gather(*tasks, server_task, return_exceptions=True)
    await c.close()
