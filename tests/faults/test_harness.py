"""The fault harness in the test suite: real processes, real PostgreSQL, Kafka, versitygw and
toxiproxy (private to the run), and an audit that must pass.

- the short run: every fault kind, the network, S3 and scratch ones included (so storage
  s3), at half the capacity the run first measures;
- the ffmpeg run: the process faults with the real ffmpeg executor;
- the checker's self-test: the same audit on fleets broken on purpose (no fence on
  finishing; a job dropped) must fail, on the check that names the damage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.faults import KINDS, PROCESS_KINDS
from tests.support.databases import require_service

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidjobs" / "bin"


def _have_services(s3: bool) -> None:
    if not (shutil.which("java") and shutil.which("mvn")):
        require_service("Apache Kafka", "the harness starts its own broker and needs java and mvn")
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        require_service("PostgreSQL", "the harness starts its own cluster and needs initdb")
    have_go = bool(shutil.which("go") or Path("/usr/local/go/bin/go").exists())
    if not (CACHE / "server").exists() and not have_go:
        require_service("toxiproxy", "the harness proxies every connection: build it once with go install")
    if s3 and not (CACHE / "versitygw").exists() and not have_go:
        require_service("S3 (versitygw)", "the harness starts its own versitygw: build it once with go install")


def _harness(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    report = tmp_path / "report.md"
    seed = os.environ.get("VIDJOBS_HARNESS_SEED", "20261129")
    run = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--seed", seed, "--report", str(report), "--out", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    return run, report.read_text() if report.exists() else ""


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize(
    "preset, storage, kinds",
    [pytest.param("short", "s3", KINDS, marks=pytest.mark.s3), ("ffmpeg", "local", (*PROCESS_KINDS, "partition_worker_db"))],
)
def test_fault_harness_audit_passes(preset: str, storage: str, kinds: tuple[str, ...], tmp_path: Path) -> None:
    """With s3, blobs live in a private versitygw and every process has its own data dir."""
    _have_services(storage == "s3")
    run, text = _harness(tmp_path, "--preset", preset, "--storage", storage)
    assert run.returncode == 0, f"harness failed (exit {run.returncode})\n{text or run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "**Audit: PASSED**" in text
    assert f"storage {storage}" in text
    assert "| **lost** | **0** |" in text and "| **double effects** | **0** |" in text
    for kind in kinds:
        assert f"| {kind} |" in text, f"fault {kind} was not injected"
    for check in (
        "webhook delivered at least once", "no orphaned objects", "no scratch leftovers",
        "| every task of a succeeded job succeeded exactly once | ok |",
        "| no job or task was finished by a zombie (each success follows its own claim) | ok |",
    ):
        assert check in text
    tasks = re.search(r"\| jobs of tasks \(their tasks\) \| (\d+) \((\d+)\) \|", text)
    assert tasks and int(tasks.group(1)) > 0 and int(tasks.group(2)) >= 3 * int(tasks.group(1)), "no ladders ran"
    if preset == "short":
        ratio = float(re.search(r"\| \*\*load / capacity\*\* \| \*\*([0-9.]+)\*\*", text).group(1))  # type: ignore[union-attr]
        assert ratio >= 0.25, f"load / capacity {ratio}"


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize(
    "broken, faults, failing",
    [
        (
            "fence",
            "zombie_worker,partition_worker_db,zombie_worker",
            ("exactly one committed completion per key", "every task of a succeeded job succeeded exactly once"),
        ),
        ("drop", "kill_worker", ("every accepted key ended succeeded or failed with a reason",)),
    ],
)
def test_checker_fails_on_a_broken_fleet(broken: str, faults: str, failing: tuple[str, ...], tmp_path: Path) -> None:
    """Jepsen's rule: a checker that never fails proves nothing. Zombies of a fleet without
    its fence finish jobs (or tasks) a second time; a fleet that drops a job loses it."""
    _have_services(False)
    run, text = _harness(
        tmp_path, "--preset", "short", "--broken", broken, "--faults", faults,
        "--seconds", "30", "--interval", "8", "--capacity", "20", "--share", "0.5", "--drain-timeout", "60",
        "--job-seconds", "1",  # ~3 jobs held per worker: a paused or cut-off worker always holds one
    )
    assert run.returncode == 1, f"the harness passed a broken fleet ({broken})\n{text or run.stdout[-4000:]}\n{run.stderr[-3000:]}"
    assert "**Audit: FAILED**" in text
    failed = [line for line in text.splitlines() if "| **FAILED** |" in line]
    assert any(line.startswith(f"| {one} |") for one in failing for line in failed), "\n".join(failed) or text[-3000:]
    ok = [line for line in text.splitlines() if "| ok |" in line]
    if broken == "fence":  # doubles, not a fleet that merely failed its jobs
        doubles = re.search(r"\| \*\*double effects\*\* \| \*\*(\d+)\*\* \|", text)  # jobs or tasks done twice
        assert doubles and int(doubles.group(1)) >= 1, text[-3000:]
        assert any(line.startswith("| every accepted key ended succeeded or failed") for line in ok), text[-3000:]
        assert int(re.search(r"\| succeeded / failed \| (\d+) /", text).group(1)) > 0  # type: ignore[union-attr]
        assert any(line.startswith("| no job or task was finished by a zombie") for line in failed), "\n".join(failed)
    else:  # the dropped job is lost, and nothing was done twice
        lost = re.search(r"\| \*\*lost\*\* \| \*\*(\d+)\*\* \|", text)
        assert lost and int(lost.group(1)) >= 1, text[-3000:]
        assert "| **double effects** | **0** |" in text, text[-3000:]
