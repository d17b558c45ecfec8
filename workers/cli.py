"""The `vidjobs` command: every process of the fleet, the embedded mode and a client."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from jobs.settings import Settings, get_settings
from workers import compose, loop
from workers.cli_tenants import tenant_app
from workers.client import Client, ClientError, connection

app = typer.Typer(help="vidjobs: video edit jobs with idempotent job keys.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
console = Console()
err = Console(stderr=True)

ExecutorOpt = Annotated[str, typer.Option(help="ffmpeg, or sleep (a fixed-time test executor)")]


def _logging(verbose: bool = False) -> None:
    from workers.logs import setup

    setup(verbose)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""

    async def main() -> None:
        c = compose.build(get_settings())
        await compose.migrate(c.db, c.blobs)
        await c.close()

    loop.run(main())
    console.print(f"database at head: {_redact(get_settings().resolved_database_url)}")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API."""
    import uvicorn

    _logging()
    c = compose.build(get_settings(), with_ffmpeg_checks=True)
    uvicorn.run(c.app(compose.make_probe()), host=host, port=port, log_level="info")


MetricsPortOpt = Annotated[
    int | None, typer.Option(help="serve Prometheus metrics on this port (default: off)")
]


def _serve_metrics(port: int | None) -> None:
    from workers.metrics import serve_metrics

    serve_metrics(port if port is not None else get_settings().metrics_port)


def _require_kafka(command: str) -> None:
    if not get_settings().kafka_bootstrap:
        err.print(
            f"error: `vidjobs {command}` runs in a fleet and needs VIDJOBS_KAFKA_BOOTSTRAP "
            "(host:port of Kafka); the embedded mode (`vidjobs up`) runs it in-process"
        )
        raise typer.Exit(2)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 2,
    executor: ExecutorOpt = "ffmpeg",
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run a worker: jobs from Kafka events (when configured) and a database sweep."""

    _logging()
    _serve_metrics(metrics_port)

    async def main() -> None:
        settings = get_settings()
        c = compose.build(settings)
        runner = c.runner(compose.make_executor(executor, settings), concurrency)
        log = logging.getLogger("vidjobs")
        log.info("worker %s: concurrency %d", runner.owner, concurrency)
        stop = _stop_event()
        if settings.kafka_bootstrap:
            from workers.bus import make_bus
            from workers.consumer import BusWorker

            bus = make_bus(settings)
            log.info("consuming %s as group %s", bus.topic, settings.kafka_worker_group)
            fleet = BusWorker(
                runner,
                bus,
                settings.kafka_worker_group,
                sweep_seconds=settings.fleet_sweep_seconds,
            )
            await fleet.run(stop)
        else:
            await runner.run(stop)
        await c.close()

    loop.run(main())


def _run_fleet_process(command: str, metrics_port: int | None, make: Any) -> None:
    """Run one Kafka-side process (`make(components, settings)` has `.run(stop)`)."""
    _require_kafka(command)
    _logging()
    _serve_metrics(metrics_port)

    async def main() -> None:
        settings = get_settings()
        c = compose.build(settings)
        await make(c, settings).run(_stop_event())
        await c.close()

    loop.run(main())


@app.command()
def relay(metrics_port: MetricsPortOpt = None) -> None:
    """Run the outbox relay (one active per fleet; extra replicas stand by)."""
    from workers.bus import make_bus
    from workers.relay import Relay

    _run_fleet_process(
        "relay",
        metrics_port,
        lambda c, s: Relay(c.db, make_bus(s), s, wakeup=c.relay_wakeup),
    )


@app.command()
def ledger(metrics_port: MetricsPortOpt = None) -> None:
    """Run the usage ledger: media seconds of succeeded jobs, counted once per event."""
    from workers.bus import make_bus
    from workers.ledger import Ledger

    _run_fleet_process(
        "ledger", metrics_port, lambda c, s: Ledger(c.db, make_bus(s), s.kafka_ledger_group)
    )


@app.command()
def reaper(interval: float = 1.0, metrics_port: MetricsPortOpt = None) -> None:
    """Run the reaper: expired leases and due retries requeued; old records pruned."""
    from workers.reaper import Reaper

    _logging()
    _serve_metrics(metrics_port)

    async def main() -> None:
        c = compose.build(get_settings())
        await Reaper(c.claims, c.blobs, interval=interval).run(_stop_event())
        await c.close()

    loop.run(main())


@app.command()
def up(
    host: str = "127.0.0.1",
    port: int = 8000,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 2,
    executor: ExecutorOpt = "ffmpeg",
) -> None:
    """Embedded mode: migrate, then API, relay, workers, ledger and reaper in one process."""
    _logging()
    loop.run(run_embedded(get_settings(), host, port, concurrency, executor))


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
    import uvicorn

    from workers.bus import make_bus
    from workers.consumer import BusWorker
    from workers.ledger import Ledger
    from workers.reaper import Reaper
    from workers.relay import Relay

    c = compose.build(settings, with_ffmpeg_checks=executor == "ffmpeg")
    await compose.migrate(c.db, c.blobs)
    creds = await compose.local_credentials(c)
    config = uvicorn.Config(
        c.app(compose.make_probe()), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    stop = stop or _stop_event()
    runner = c.runner(compose.make_executor(executor, settings), concurrency)
    reaper_loop = Reaper(c.claims, c.blobs, wakeup=c.wakeup)
    # The in-process bus (Kafka if VIDJOBS_KAFKA_BOOTSTRAP is set): the same relay, bus-driven
    # runner and ledger as the fleet, with a sweep every poll interval behind them.
    bus = make_bus(settings)
    relay_loop = Relay(c.db, bus, settings, wakeup=c.relay_wakeup)
    worker_loop = BusWorker(
        runner, bus, settings.kafka_worker_group, sweep_seconds=settings.poll_seconds
    )
    ledger_loop = Ledger(c.db, bus, settings.kafka_ledger_group)
    server_task = asyncio.create_task(server.serve())
    while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    if server_task.done():
        await server_task
        raise SystemExit(f"could not start the API on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    url = f"http://{host}:{bound}"
    compose.write_credentials(settings.data_dir, {**creds, "url": url})
    if not quiet:
        console.print(f"[bold green]vidjobs is up[/] at {url}")
        console.print(
            f"token: {creds['token']}  (saved in {settings.data_dir / compose.CREDENTIALS})"
        )
    if ready is not None:
        ready.set()
    loops = (relay_loop, worker_loop, ledger_loop, reaper_loop)
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
    await stop.wait()
    server.should_exit = True
    await asyncio.gather(*tasks, server_task, return_exceptions=True)
    await c.close()


def _client() -> Client:
    url, token = connection(get_settings())
    return Client(url, token)


def _fail(exc: ClientError) -> None:
    err.print(f"error: {exc}")
    if isinstance(exc.body, dict) and exc.body.get("error", {}).get("details"):
        err.print_json(data=exc.body["error"]["details"])
    raise typer.Exit(1)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[bool, typer.Option(help="wait until the job ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    on_duplicate: str = "return_existing",
    idempotency_key: str | None = None,
) -> None:
    """Submit an edit request from a JSON file."""
    try:
        edit = json.loads(file.read_text())
    except ValueError as exc:
        err.print(f"error: {file} is not valid JSON: {exc}")
        raise typer.Exit(2) from None
    client = _client()
    try:
        _, job, replayed = client.submit(
            edit, on_duplicate=on_duplicate, idempotency_key=idempotency_key
        )
        if wait:
            while job["status"] in ("pending", "running"):
                time.sleep(0.5)
                job = client.get(job["key"])
    except ClientError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps({**job, "replayed": replayed}, indent=2))
    else:
        what = "duplicate: existing job" if replayed else "submitted"
        console.print(f"{what} {job['key']} ({job['status']})")


@app.command()
def status(key: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one job by its key."""
    try:
        job = _client().get(key)
    except ClientError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(job, indent=2))
        return
    console.print(
        f"{job['key']}  [bold]{job['status']}[/]  progress {job['progress']:.0%}  "
        f"attempts {job['attempts']}/{job['max_attempts']}"
    )
    if job["error"]:
        console.print(f"error: {job['error']['code']}: {job['error']['message']}")
    if job["output"]:
        console.print(f"output: {job['output']['digest']} ({job['output']['size']} bytes)")


@app.command("jobs")
def list_jobs(
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List your jobs, newest first."""
    try:
        page = _client().list(status, limit)
    except ClientError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(page, indent=2))
        return
    table = Table("key", "status", "progress", "attempts", "created")
    for job in page["jobs"]:
        table.add_row(
            job["key"],
            job["status"],
            f"{job['progress']:.0%}",
            str(job["attempts"]),
            job["created_at"],
        )
    console.print(table)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def main(argv: list[str] | None = None) -> Any:
    return app(argv if argv is not None else sys.argv[1:])


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="keep the demo's data dir afterwards")] = False,
) -> None:
    """Make a test clip, submit edits (and duplicates) to an embedded vidjobs, show results."""
    from workers.demo import run_demo

    _logging()
    logging.getLogger().setLevel(logging.WARNING)
    raise typer.Exit(loop.run(run_demo(get_settings(), console, keep=keep)))


if __name__ == "__main__":
    main()
