"""The embedded mode and the client commands, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def vidjobs(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def embedded(tmp_path: Path, source_root: Path) -> dict[str, str]:
    env = {**os.environ, "VIDJOBS_DATA_DIR": str(tmp_path / "data"), "VIDJOBS_SOURCE_ROOTS": str(source_root), "VIDJOBS_SLEEP_SECONDS": "0.05"}
    for var in ("VIDJOBS_DATABASE_URL", "VIDJOBS_API_URL", "VIDJOBS_API_TOKEN", "VIDJOBS_KAFKA_BOOTSTRAP"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "up", "--port", "0", "--executor", "sleep"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    creds = tmp_path / "data" / "credentials.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (creds.exists() and "url" in creds.read_text()):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    assert "url" in creds.read_text(), "vidjobs up did not come up"
    yield env
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def test_up_submit_status_jobs(embedded: dict[str, str], tmp_path: Path) -> None:
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 1}]}))
    first = json.loads(vidjobs("submit", str(edit), "--wait", "--json", env=embedded).stdout)
    assert first["status"] == "succeeded" and first["replayed"] is False
    again = json.loads(vidjobs("submit", str(edit), "--json", env=embedded).stdout)
    assert again["key"] == first["key"] and again["replayed"] is True
    status = json.loads(vidjobs("status", first["key"], "--json", env=embedded).stdout)
    assert status["output"]["digest"].startswith("sha256:")
    listed = json.loads(vidjobs("jobs", "--status", "succeeded", "--json", env=embedded).stdout)
    assert [j["key"] for j in listed["jobs"]] == [first["key"]]
    rejected = vidjobs("submit", str(edit), "--on-duplicate", "reject", env=embedded, check=False)
    assert rejected.returncode == 1 and "409" in rejected.stderr


def test_bad_edit_file_is_a_clear_error(embedded: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": {"path": "../etc/passwd"}}))
    r = vidjobs("submit", str(bad), env=embedded, check=False)
    assert r.returncode == 1 and "'..' segments" in r.stderr
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{oops")
    r = vidjobs("submit", str(notjson), env=embedded, check=False)
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_tenant_create_prints_a_working_token(embedded: dict[str, str]) -> None:
    token = vidjobs("tenant", "create", "newsroom", env=embedded).stdout.strip()
    assert token.startswith("vjt_")
    env = {**embedded, "VIDJOBS_API_TOKEN": token}
    listed = json.loads(vidjobs("jobs", "--json", env=env).stdout)
    assert listed["jobs"] == []
    dup = vidjobs("tenant", "create", "newsroom", env=embedded, check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr


def test_tenant_grant_and_revoke_source(embedded: dict[str, str]) -> None:
    vidjobs("tenant", "create", "studio", env=embedded)
    granted = vidjobs("tenant", "grant-source", "studio", "s3://media-bucket/shows", env=embedded)
    assert "s3://media-bucket/shows/" in granted.stdout
    revoked = vidjobs("tenant", "revoke-source", "studio", "s3://media-bucket/shows/", env=embedded)
    assert "no longer" in revoked.stdout
    again = vidjobs("tenant", "revoke-source", "studio", "s3://media-bucket/shows/", env=embedded, check=False)
    assert again.returncode == 2 and "no grant" in again.stderr
    bad = vidjobs("tenant", "grant-source", "studio", "s3://media-bucket/../x", env=embedded, check=False)
    assert bad.returncode == 2 and "segments" in bad.stderr
    nobody = vidjobs("tenant", "grant-source", "nobody", "s3://media-bucket/x/", env=embedded, check=False)
    assert nobody.returncode == 2 and "no tenant" in nobody.stderr
