"""The embedded mode and the client commands, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def vidjobs(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=check)


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


def test_submit_of_a_json_list_is_one_batch_answered_item_by_item(
    embedded: dict[str, str], tmp_path: Path
) -> None:
    trims = [{"op": "trim", "start": i, "end": i + 1} for i in (10, 11)]
    edits = [
        {"source": {"path": "clip.mp4"}, "operations": [trims[0]]},
        {"source": {"path": "clip.mp4"}, "operations": [trims[1]]},
        {"source": {"path": "clip.mp4"}, "operations": [trims[0]]},  # a duplicate of [0]
        {"source": {"path": "clip.mp4"}, "operations": [{"op": "scale"}]},  # invalid
    ]
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps(edits))
    r = vidjobs("submit", str(batch), "--json", env=embedded, check=False)
    assert r.returncode == 1, r.stderr  # one item failed: said in the exit status
    results = json.loads(r.stdout)["results"]
    assert [x["status"] for x in results] == [201, 201, 200, 422]
    assert results[2]["job"]["key"] == results[0]["job"]["key"]
    assert results[3]["error"]["details"][0]["path"].startswith("jobs[3].operations[0]")


def test_worker_concurrency_comes_from_the_environment_unless_given(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDJOBS_")}
    env.update({"VIDJOBS_DATA_DIR": str(tmp_path / "data"), "VIDJOBS_WORKER_CONCURRENCY": "3"})
    vidjobs("migrate", env=env)
    for extra, expected in (([], "concurrency 3"), (["--concurrency", "5"], "concurrency 5")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--executor", "sleep", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stderr is not None
            line = ""
            for line in proc.stderr:
                if "concurrency" in line:
                    break
            assert expected in line, line
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_cancel_retry_events_upload_download_and_exit_codes(embedded: dict[str, str], tmp_path: Path) -> None:
    from workers.ffmpeg import FfmpegNotFound, find_ffmpeg
    from workers.ffmpeg.testmedia import make_clip

    slow = {**embedded}
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 2}]}))
    later = "2099-01-01T00:00:00Z"
    job = json.loads(vidjobs("submit", str(edit), "--run-at", later, "--priority", "7", "--json", env=slow).stdout)
    assert job["status"] == "pending" and job["priority"] == 7
    cancelled = json.loads(vidjobs("cancel", job["key"], "--json", env=slow).stdout)
    assert cancelled["status"] == "cancelled"
    again = vidjobs("retry", job["key"], env=slow)
    assert "pending" in again.stdout
    twice = vidjobs("retry", job["key"], env=slow, check=False)
    assert twice.returncode == 1 and twice.stderr.startswith("error: HTTP 409 invalid_state") and "Traceback" not in twice.stderr
    followed = vidjobs("events", job["key"], "--follow", env=slow)  # returns once the job ends
    assert followed.stdout.count("job.cancelled") == 1 and "job.succeeded" in followed.stdout
    kinds = [json.loads(line)["type"] for line in vidjobs("events", job["key"], "--json", env=slow).stdout.splitlines()]
    assert kinds[0] == "job.submitted" and kinds[-1] == "job.succeeded"
    missing = vidjobs("status", "vj1_" + "0" * 64, env=slow, check=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    unreachable = vidjobs("status", job["key"], env={**slow, "VIDJOBS_API_URL": "http://127.0.0.1:9", "VIDJOBS_API_TOKEN": "x"}, check=False)
    assert unreachable.returncode == 3 and unreachable.stderr.startswith("error:") and "Traceback" not in unreachable.stderr
    try:
        clip = make_clip(tmp_path / "up.mp4", seconds=1, ffmpeg=find_ffmpeg())
    except FfmpegNotFound:
        return
    digest = vidjobs("upload", str(clip), env=slow).stdout.strip()
    assert digest.startswith("sha256:")
    edit.write_text(json.dumps({"source": {"digest": digest}, "operations": [{"op": "trim", "start": 0, "end": 0.5}]}))
    done = json.loads(vidjobs("submit", str(edit), "--wait", "--json", env=slow).stdout)
    assert done["status"] == "succeeded"
    out = tmp_path / "out.mp4"
    assert vidjobs("download", done["key"], str(out), env=slow).stdout.strip() == str(out)
    assert out.stat().st_size == done["output"]["size"]
