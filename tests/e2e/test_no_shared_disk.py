"""No process needs another's disk: API and worker on different data dirs, PostgreSQL + S3.

Real processes (`vidjobs migrate`, `tenant create`, `serve`, `worker`), a real PostgreSQL, a
real S3-compatible server (versitygw) and the real ffmpeg: a clip is uploaded to the API,
edited by a worker that shares no directory with it, and the output is downloaded through
a presigned URL and through the API.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.s3 import s3_env, unique_bucket

pytestmark = [pytest.mark.s3, pytest.mark.postgres, pytest.mark.ffmpeg]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(pg_db_url: str, bucket: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")}
    env.update(s3_env())
    env.update(
        {
            "VIDJOBS_DATA_DIR": str(data_dir),
            "VIDJOBS_DATABASE_URL": pg_db_url,
            "VIDJOBS_STORAGE_URL": f"s3://{bucket}/vidjobs",
            "VIDJOBS_POLL_SECONDS": "0.2",
        }
    )
    return env


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_api_and_worker_share_no_disk_and_a_real_edit_round_trips(
    pg_db_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    from tests.e2e.test_video_jobs import _ffmpeg
    from workers.ffmpeg.testmedia import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=3, size="320x240", ffmpeg=_ffmpeg())
    bucket = unique_bucket()
    api_dir, worker_dir = tmp_path / "api-host", tmp_path / "worker-host"
    api_env = base_env(pg_db_url, bucket, api_dir)
    worker_env = base_env(pg_db_url, bucket, worker_dir)
    cli("migrate", env=api_env)  # also creates the bucket
    token = cli("tenant", "create", "acme", env=api_env).strip()
    port = free_port()
    processes.append(start(["serve", "--port", str(port)], api_env, tmp_path / "api.log"))
    processes.append(start(["worker", "--executor", "ffmpeg"], worker_env, tmp_path / "worker.log"))
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.2)
        data = clip.read_bytes()
        up = http.post("/v1/sources", content=data, headers={**auth, "Content-Type": "video/mp4"})
        assert up.status_code == 201, up.text
        edit = {
            "source": {"digest": up.json()["digest"]},
            "operations": [{"op": "trim", "start": 0.5, "end": 2.5}, {"op": "scale", "width": 160}],
        }
        sub = http.post("/v1/jobs", json=edit, headers=auth)
        assert sub.status_code == 201, sub.text
        key = sub.json()["key"]
        deadline = time.monotonic() + 90
        while (job := http.get(f"/v1/jobs/{key}", headers=auth).json())["status"] not in {
            "succeeded", "failed"
        }:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        assert job["status"] == "succeeded", job
        out = job["output"]
        redirect = http.get(f"/v1/jobs/{key}/output", headers=auth)
        assert redirect.status_code == 307
        direct = httpx.get(redirect.headers["location"], timeout=30)
        assert direct.status_code == 200
        assert f"sha256:{hashlib.sha256(direct.content).hexdigest()}" == out["digest"]
        assert len(direct.content) == out["size"] and direct.content[4:8] == b"ftyp"
        through = http.get(f"/v1/jobs/{key}/output", params={"redirect": "false"}, headers=auth)
        assert through.status_code == 200 and through.content == direct.content
        assert 1500 <= out["duration_ms"] <= 2500 and out["width"] == 160
    # Neither host kept a blob: the source and the output live in the bucket only. The worker
    # keeps its verified copy of the source in its input cache while it runs, and no longer.
    assert not (api_dir / "blobs").exists() and not (worker_dir / "blobs").exists()
    assert files_under(api_dir / "tmp") == []
    cached = files_under(worker_dir / "tmp")
    assert [p.parent.name.startswith("inputs-") for p in cached] == [True], cached
    assert cached[0].read_bytes() == data
    worker = processes[-1]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert files_under(worker_dir / "tmp") == []
