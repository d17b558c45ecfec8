"""The fault harness's short run, in the test suite: real processes, real PostgreSQL and
Kafka (private to the run), every fault kind at least once, and an audit that must pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import require_service

REPO = Path(__file__).resolve().parents[2]


def _have_services() -> None:
    if not (shutil.which("java") and shutil.which("mvn")):
        require_service("Apache Kafka", "the harness starts its own broker and needs java and mvn")
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        require_service("PostgreSQL", "the harness starts its own cluster and needs initdb")


def _have_versitygw() -> None:
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidjobs" / "bin" / "versitygw"
    if not cached.exists() and not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        require_service("S3 (versitygw)", "the harness starts its own versitygw: build it once with go install")


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize(
    "preset, storage",
    [("short", "local"), ("ffmpeg", "local"), pytest.param("short", "s3", marks=pytest.mark.s3)],
)
def test_fault_harness_audit_passes(preset: str, storage: str, tmp_path: Path) -> None:
    """With s3, blobs live in a private versitygw and every process has its own data dir."""
    _have_services()
    if storage == "s3":
        _have_versitygw()
    report = tmp_path / "report.md"
    seed = os.environ.get("VIDJOBS_HARNESS_SEED", "20261129")
    run = subprocess.run(
        [sys.executable, "-m", "harness", "--preset", preset, "--storage", storage, "--seed", seed, "--report", str(report), "--out", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    text = report.read_text() if report.exists() else ""
    assert run.returncode == 0, f"harness failed (exit {run.returncode})\n{text or run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "**Audit: PASSED**" in text
    assert f"storage {storage}" in text
    assert "| **lost** | **0** |" in text and "| **double effects** | **0** |" in text
    for kind in ("kill_worker", "zombie_worker", "kill_relay", "restart_postgres", "restart_kafka", "kill_ledger", "kill_reaper", "kill_webhooks"):
        assert f"| {kind} |" in text, f"fault {kind} was not injected"
