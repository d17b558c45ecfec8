"""`vidjobs --help` stays quick: it imports neither the API stack nor the migrations."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_neither_fastapi_nor_alembic() -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "workers.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "Usage" in run.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the measurement saw the imports at all
    heavy = {m for m in imported if m.split(".")[0] in ("fastapi", "alembic", "uvicorn")}
    assert heavy == set()


def test_fleet_processes_import_neither_the_api_nor_the_migrations() -> None:
    """What `vidjobs worker` (and relay, ledger, reaper) import to start: a restarted
    worker's start is what recovery waits for when every worker was killed."""
    code = (
        "import sys, workers.cli, workers.compose, workers.consumer, workers.bus.kafka, "
        "workers.relay, workers.reaper, workers.ledger; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'starlette', 'alembic', 'uvicorn', 'sqladmin'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
