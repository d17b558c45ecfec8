"""A real `vidjobs up` process (embedded mode) for tests that talk to it as users do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def start_embedded(env: dict[str, str], data_dir: Path, *args: str) -> subprocess.Popen[str]:
    """Start `vidjobs up` on a free port and wait until it has written its credentials."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "up", "--port", "0", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    creds = data_dir / "credentials.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (creds.exists() and "url" in creds.read_text()):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    assert creds.exists() and "url" in creds.read_text(), "vidjobs up did not come up"
    return proc


def stop_embedded(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def embedded_env(data_dir: Path, source_root: Path) -> dict[str, str]:
    env = {**os.environ, "VIDJOBS_DATA_DIR": str(data_dir), "VIDJOBS_SOURCE_ROOTS": str(source_root), "VIDJOBS_SLEEP_SECONDS": "0.05"}
    for var in ("VIDJOBS_DATABASE_URL", "VIDJOBS_API_URL", "VIDJOBS_API_TOKEN", "VIDJOBS_KAFKA_BOOTSTRAP"):
        env.pop(var, None)
    return env


def credentials(data_dir: Path) -> dict[str, str]:
    return json.loads((data_dir / "credentials.json").read_text())


@pytest.fixture
def embedded(tmp_path: Path, source_root: Path) -> Iterator[dict[str, str]]:
    """`vidjobs up` with the sleep executor; yields the environment of its client commands."""
    env = embedded_env(tmp_path / "data", source_root)
    proc = start_embedded(env, tmp_path / "data", "--executor", "sleep")
    yield env
    stop_embedded(proc)
