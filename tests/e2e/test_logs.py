"""What `vidjobs up` writes to its log, as an operator reads it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import vidjobs
from tests.e2e.conftest import credentials, embedded_env, start_embedded, stop_embedded


def test_json_logs_and_a_client_that_hangs_up_mid_upload(tmp_path: Path, source_root: Path) -> None:
    data = tmp_path / "data"
    env = {**embedded_env(data, source_root), "VIDJOBS_LOG_FORMAT": "json"}
    proc = start_embedded(env, data, "--executor", "sleep")
    try:
        creds = credentials(data)
        url = urlsplit(creds["url"])
        with socket.create_connection((url.hostname, url.port)) as s:
            s.sendall(f"POST /v1/sources HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {creds['token']}\r\nContent-Type: video/mp4\r\nContent-Length: 10000000\r\n\r\n".encode() + b"\0" * 65536)
            time.sleep(0.3)
        with vidjobs.Client(creds["url"], creds["token"]) as vj:
            job = vj.wait(vj.submit({"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 1}]}).key, timeout=30)
            assert job.status == "succeeded"
            time.sleep(0.3)
    finally:
        stop_embedded(proc)
    out = proc.stdout.read() if proc.stdout else ""
    # The banner goes to stdout as text; every log line (stderr) is one JSON object.
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, "vidjobs up logged nothing"
    gone = [line for line in lines if str(line["event"]).startswith("client disconnected during POST /v1/sources")]
    assert len(gone) == 1 and gone[0]["level"] == "info"
    assert not any("exception" in line or "Traceback" in str(line["event"]) for line in lines), out
    assert not list((data / "blobs" / "tmp").glob("upload-*")), "the broken upload left a temp file"
