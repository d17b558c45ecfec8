"""The `vidjobs` command: every process of the fleet, the embedded mode and a client."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from jobs.settings import get_settings
from workers import cli_client, loop
from workers.cli_operators import operator_app
from workers.cli_tenants import tenant_app

app = typer.Typer(help="vidjobs: video edit jobs with idempotent job keys.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(operator_app, name="operator")
console = Console()
err = Console(stderr=True)

ExecutorOpt = Annotated[str, typer.Option(help="ffmpeg, or sleep (a fixed-time test executor)")]


def _version(value: bool) -> None:
    if value:
        from vidjobs import __version__

        console.print(f"vidjobs {__version__}")
        raise typer.Exit()


@app.callback()
def _startup(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Every command starts by reading the settings: a bad one is one line, exit 2."""
    try:
        get_settings()
    except ValidationError as exc:
        for problem in exc.errors():
            name = "VIDJOBS_" + "_".join(str(part) for part in problem["loc"]).upper()
            value = str(problem.get("input"))[:80]
            message = str(problem["msg"]).removeprefix("Value error, ")
            err.print(f"{name}={value!r}: {message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _logging(verbose: bool = False) -> None:
    """Logs, and traces when the OTEL_* variables ask for them (every process command)."""
    import click

    from workers import tracing
    from workers.logs import setup

    setup(verbose, get_settings().log_format)
    ctx = click.get_current_context(silent=True)
    commands = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    tracing.setup(ctx.info_name if ctx and ctx.info_name else (commands or ["vidjobs"])[0])


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""

    async def main() -> None:
        from workers import compose

        c = compose.build(get_settings())
        await compose.migrate(c.db, c.blobs)
        await c.close()

    loop.run(main())
    console.print(f"database at head: {_redact(get_settings().resolved_database_url)}")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="uvicorn processes sharing the port (one per core)")
    ] = 1,
) -> None:
    """Run the HTTP API (and Prometheus metrics on VIDJOBS_METRICS_PORT when set)."""
    import uvicorn

    from workers import compose
    from workers.http_server import server_config

    _logging()
    settings = get_settings()
    if workers == 1:
        _serve_metrics(None)
        config = server_config(
            compose.serve_app(), host, port, settings, log_level="info", log_config=None
        )
        uvicorn.Server(config).run()
        return
    if settings.metrics_port:
        err.print("VIDJOBS_METRICS_PORT is not served with --workers > 1 (one port, N processes)")
    from uvicorn.supervisors import Multiprocess

    # Each process builds its own app (engine, pool, caches) from the settings: the factory.
    # A child answers the supervisor's health check only once it has imported and built its
    # app; on a loaded host that takes longer than uvicorn's default 5 s, and a child that
    # misses it is killed and restarted, again and again.
    config = server_config(
        "workers.compose:serve_app", host, port, settings, factory=True, workers=workers,
        log_level="info", log_config=None, timeout_worker_healthcheck=60,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


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
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="jobs at once [default: VIDJOBS_WORKER_CONCURRENCY, 2]"),
    ] = None,
    executor: ExecutorOpt = "ffmpeg",
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run a worker: jobs from Kafka events (when configured) and a database sweep."""

    _logging()
    _serve_metrics(metrics_port)

    async def main() -> None:
        from workers import compose

        settings = get_settings()
        c = compose.build(settings)
        slots = concurrency or settings.worker_concurrency
        runner = c.runner(compose.make_executor(executor, settings), slots)
        log = logging.getLogger("vidjobs")
        log.info("worker %s: concurrency %d", runner.owner, slots)
        stop = loop.stop_on_signals()
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
        from workers import compose

        settings = get_settings()
        c = compose.build(settings)
        await make(c, settings).run(loop.stop_on_signals())
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
def webhooks(metrics_port: MetricsPortOpt = None) -> None:
    """Run the webhook dispatcher: job events to owed deliveries, sent and retried."""
    from workers.bus import make_bus
    from workers.webhooks.dispatcher import Dispatcher

    _run_fleet_process(
        "webhooks",
        metrics_port,
        lambda c, s: Dispatcher(c.db, make_bus(s), s, wakeup=c.webhook_wakeup),
    )


@app.command()
def reaper(interval: float = 1.0, metrics_port: MetricsPortOpt = None) -> None:
    """Run the reaper: expired leases and due retries requeued; old records pruned."""
    from workers.reaper import Reaper

    _logging()
    _serve_metrics(metrics_port)

    async def main() -> None:
        from workers import compose

        c = compose.build(get_settings())
        await Reaper(c.claims, c.blobs, interval=interval).run(loop.stop_on_signals())
        await c.close()

    loop.run(main())


@app.command()
def up(
    host: str = "127.0.0.1",
    port: int = 8000,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="jobs at once [default: VIDJOBS_WORKER_CONCURRENCY, 2]"),
    ] = None,
    executor: ExecutorOpt = "ffmpeg",
) -> None:
    """Embedded mode: migrate, then API, relay, workers, ledger, webhooks, reaper in one process."""
    _logging()
    settings = get_settings()
    slots = concurrency or settings.worker_concurrency
    from workers import compose

    loop.run(compose.run_embedded(settings, host, port, slots, executor))


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


cli_client.register(app)


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
