"""/v1/jobs/{key}/tasks and /v1/jobs/{key}/outputs/{name} on SQLite and a real PostgreSQL."""

from __future__ import annotations

import httpx

from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from tests.integration.test_api import EDIT, app, auth, http, tokens
from tests.integration.test_runner import blobs, make_runner, running
from workers.executor import ExecutorRegistry, SleepExecutor

__all__ = ["app", "blobs", "http", "tokens"]  # fixtures shared with other API tests

TWO = {
    "source": {"path": "clip.mp4"},
    "operations": [{"op": "trim", "start": 1, "end": 2}],
    "outputs": [
        {"name": "720p", "container": "mp4", "height": 720, "crf": 26},
        {"name": "poster", "container": "jpg", "width": 320, "at": 0.5},
    ],
}


async def _until(http: httpx.AsyncClient, key: str, token: str, status: str) -> dict:
    import asyncio

    async with asyncio.timeout(10):
        while True:
            view = (await http.get(f"/v1/jobs/{key}", headers=auth(token))).json()
            if view["status"] == status:
                return view
            await asyncio.sleep(0.02)


async def test_outputs_are_tasks_listed_and_downloaded_one_by_one(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    db: Database,
    service: JobService,
    settings: Settings,
    blobs: LocalStorage,
) -> None:
    acme = tokens["acme"]
    made = await http.post("/v1/jobs", json=TWO, headers=auth(acme))
    assert made.status_code == 201, made.text
    view = made.json()
    key = view["key"]
    assert view["status"] == "running" and view["links"]["tasks"] == f"/v1/jobs/{key}/tasks"
    listed = (await http.get(f"/v1/jobs/{key}/tasks", headers=auth(acme))).json()["tasks"]
    assert [t["name"] for t in listed] == ["720p", "poster"]
    for t in listed:
        assert {"key", "kind", "status", "attempts", "progress", "depends_on", "output"} <= set(t)
        assert t["kind"] == "edit" and t["status"] == "pending" and t["key"].startswith("vt1_")
    runner, _ = make_runner(db, settings, blobs, ExecutorRegistry(SleepExecutor(0.01)))
    async with running(runner):
        done = await _until(http, key, acme, "succeeded")
    assert done["progress"] == 1.0 and done["tasks"]["count"] == 2
    assert set(done["links"]["outputs"]) == {"720p", "poster"}
    for name in ("720p", "poster"):
        meta = done["output"]["outputs"][name]
        got = await http.get(f"/v1/jobs/{key}/outputs/{name}", headers=auth(acme))
        assert got.status_code == 200 and len(got.content) == meta["size"]
        assert got.content == blobs.path_for(meta["digest"]).read_bytes()
    part = await http.get(
        f"/v1/jobs/{key}/outputs/720p", headers={**auth(acme), "Range": "bytes=0-9"}
    )
    assert part.status_code == 206 and len(part.content) == 10
    missing = await http.get(f"/v1/jobs/{key}/outputs/1080p", headers=auth(acme))
    assert missing.status_code == 404 and missing.json()["error"]["details"]["outputs"]
    theirs = await http.get(f"/v1/jobs/{key}/outputs/720p", headers=auth(tokens["globex"]))
    assert theirs.status_code == 404  # another tenant's job is no job at all
    their_tasks = await http.get(f"/v1/jobs/{key}/tasks", headers=auth(tokens["globex"]))
    assert their_tasks.status_code == 404
    single = await http.get(f"/v1/jobs/{key}/output", headers=auth(acme))
    assert single.status_code == 404  # several outputs: each has its own URL


async def test_a_simple_job_is_its_own_one_task(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    made = (await http.post("/v1/jobs", json=EDIT, headers=auth(tokens["acme"]))).json()
    listed = await http.get(f"/v1/jobs/{made['key']}/tasks", headers=auth(tokens["acme"]))
    [task] = listed.json()["tasks"]
    assert task["key"] == made["key"] and task["name"] == "main" and task["kind"] == "edit"
    assert task["depends_on"] == [] and task["status"] == "pending"


async def test_bad_outputs_are_refused_naming_their_path(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    cases = [
        ({"outputs": [{"name": "a"}, {"name": "a", "height": 240}]}, "outputs[1].name"),
        ({"output": {"container": "mp4"}, "outputs": [{"name": "a"}]}, "outputs"),
        ({"outputs": [{"name": "a", "container": "webm", "video_codec": "h264"}]},
         "outputs[0].video_codec"),
        ({"outputs": [{"name": "a", "at": 1}]}, "outputs[0].at"),
        ({"outputs": [{"name": "../x"}]}, "outputs[0].name"),
        ({"outputs": []}, "outputs"),
    ]  # fmt: skip
    for body, path in cases:
        answer = await http.post(
            "/v1/jobs", json={"source": {"path": "clip.mp4"}, **body}, headers=auth(tokens["acme"])
        )
        assert answer.status_code == 422, (body, answer.text)
        paths = [d["path"] for d in answer.json()["error"]["details"]]
        assert path in paths, (body, paths)
