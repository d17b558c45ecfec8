"""The hostile-input classes of issue 19 (item 5), each through the API: HEAD on jobs and
outputs, Range errors in the JSON envelope, no heap addresses in stored errors, a path
source vanishing mid-submission, list cursors that are tenant-bound keyset positions."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from tests.e2e.test_uploads_and_hostile import api, clip, finished  # noqa: F401
from workers.ffmpeg.run import sanitize

pytestmark = pytest.mark.ffmpeg
EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 0, "end": 1}]}


def envelope(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


async def succeeded_job(http: httpx.AsyncClient, source_root: Path, video: Path) -> str:
    (source_root / "clip.mp4").write_bytes(video.read_bytes())
    key = str((await http.post("/v1/jobs", json=EDIT)).json()["key"])
    assert (await finished(http, key))["status"] == "succeeded"
    return key


async def test_head_answers_jobs_and_outputs_like_get_without_a_body(
    api: Any, source_root: Path, clip: Path  # noqa: F811
) -> None:
    http, _, _ = api
    key = await succeeded_job(http, source_root, clip)
    for path in (f"/v1/jobs/{key}", "/v1/jobs", f"/v1/jobs/{key}/output"):
        got, head = await http.get(path), await http.head(path)
        assert (head.status_code, got.status_code) == (200, 200), (path, head.text)
        assert head.content == b"", path
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
        assert head.headers["content-type"] == got.headers["content-type"]
    ranged = await http.head(f"/v1/jobs/{key}/output", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == b""
    assert ranged.headers["content-range"].startswith("bytes 0-9/")
    missing = await http.head("/v1/jobs/vj1_" + "0" * 64)
    assert missing.status_code == 404 and missing.content == b""
    # the schema still lists GET only
    assert "head" not in (await http.get("/openapi.json")).json()["paths"]["/v1/jobs/{key}"]


async def test_range_errors_and_other_errors_use_the_json_envelope(
    api: Any, source_root: Path, clip: Path  # noqa: F811
) -> None:
    http, _, _ = api
    key = await succeeded_job(http, source_root, clip)
    url = f"/v1/jobs/{key}/output"
    for value in ("bytes=999999999-", "bytes=-0", "bytes=999999999-999999999"):
        envelope(await http.get(url, headers={"Range": value}), 416)
    for value in ("bytes=0-9", "bytes=-10"):  # still served
        assert (await http.get(url, headers={"Range": value})).status_code == 206
    envelope(await http.put(f"/v1/jobs/{key}"), 405, "method_not_allowed")
    envelope(await http.get("/no/such/route"), 404, "not_found")
    envelope(await http.get("/v1/jobs", params={"limit": "x"}), 422, "invalid_request")
    envelope(await http.get(f"/v1/jobs/{key}", headers={"Authorization": "Bearer nope"}), 401)


def test_heap_addresses_are_removed_from_any_context_name() -> None:
    lines = [
        "[in#0 @ 0x5581c0a0d2c0] Error opening input: No such file or directory",
        "[vost#0:0/libx264 @ 0x55d2e1f0] Error while opening encoder",
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x558a43c99880] moov atom not found",
        "[AVIOContext @ 0x7f00aa] Statistics",
    ]
    text = sanitize(lines, {})
    assert "0x" not in text, text
    assert "[in#0] Error opening input" in text and "[vost#0:0/libx264] Error" in text
    assert "[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found" in text


async def test_stored_error_messages_show_no_heap_addresses(
    api: Any, source_root: Path, tenant: TenantRef  # noqa: F811
) -> None:
    http, _, _ = api
    # No preflight in this service: the worker's ffmpeg meets the broken file and fails.
    (source_root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    r = await http.post("/v1/jobs", json={**EDIT, "source": {"path": "broken.mp4"}})
    key = r.json()["key"]
    job = await finished(http, key)
    assert job["status"] == "failed", job
    assert job["error"]["message"] and "@ 0x" not in job["error"]["message"], job["error"]
    events = (await http.get(f"/v1/jobs/{key}/events")).text
    assert "@ 0x" not in events


async def test_a_path_source_that_vanishes_during_submission_is_source_not_found(
    api: Any, source_root: Path  # noqa: F811
) -> None:
    http, service, _ = api
    target = source_root / "fleeting.mp4"
    hashed = service.digests.digest

    def vanish_then_hash(path: Path) -> str:  # removed between the lookup and the read
        path.unlink()
        return hashed(path)

    target.write_bytes(b"x" * 5000)
    service.digests.digest = vanish_then_hash  # type: ignore[method-assign]
    try:
        r = await http.post("/v1/jobs", json={**EDIT, "source": {"path": "fleeting.mp4"}})
    finally:
        service.digests.digest = hashed  # type: ignore[method-assign]
    error = envelope(r, 422, "source_not_found")
    assert error["details"][0]["path"] == "source"
    assert "database" not in error["message"]


async def test_a_source_removed_before_its_preflight_is_source_not_found(
    db: Database, settings: Settings, source_root: Path
) -> None:
    async def check(where: str, path: Path, image_ok: bool) -> None:
        path.unlink()
        path.stat()  # what a preflight's first read meets

    service = JobService(db, settings, check_source=check)
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=LocalStorage(settings.data_dir / "blobs")))
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "vanishing")
    (source_root / "gone.mp4").write_bytes(b"y" * 5000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/jobs", json={**EDIT, "source": {"path": "gone.mp4"}},
                            headers={"Authorization": f"Bearer {token}"})
        envelope(r, 422, "source_not_found")
        listed = await http.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert listed.json()["jobs"] == []  # nothing half-written


async def test_list_cursors_are_tenant_bound_and_reveal_no_row_ids(
    db: Database, settings: Settings, source_root: Path
) -> None:
    service = JobService(db, settings)
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=LocalStorage(settings.data_dir / "blobs")))
    async with db.transaction() as conn:
        a, token_a = await create_tenant(conn, "alpha")
        b, token_b = await create_tenant(conn, "beta")
    for i in range(5):
        await service.submit(a, EditRequest.model_validate({**EDIT, "operations": [{"op": "trim", "start": i, "end": i + 1}]}))
        await service.submit(b, EditRequest.model_validate({**EDIT, "operations": [{"op": "trim", "start": i, "end": i + 1}]}))
    ha, hb = ({"Authorization": f"Bearer {t}"} for t in (token_a, token_b))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        seen: list[str] = []
        cursors: list[str] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = (await http.get("/v1/jobs", params=params, headers=ha)).json()
            seen += [j["key"] for j in page["jobs"]]
            if page["next_cursor"] is None:
                break
            cursors.append(page["next_cursor"])
            params = {"limit": 2, "cursor": page["next_cursor"]}
        assert len(seen) == len(set(seen)) == 5  # pagination still walks every job once
        async with db.engine.connect() as conn:
            import sqlalchemy as sa

            ids = [str(r[0]) for r in (await conn.execute(sa.text("SELECT id FROM jobs"))).all()]
        for cursor in cursors:
            decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            assert not any(f":{i}}}" in decoded.replace(" ", "") for i in ids), decoded
            # the other tenant cannot use it: nothing to learn from its answer
            envelope(await http.get("/v1/jobs", params={"cursor": cursor}, headers=hb), 422, "invalid_request")
        # an old-style (row id) cursor, or a forged one, is refused the same way
        forged = base64.urlsafe_b64encode(b'{"before": 3}').decode().rstrip("=")
        envelope(await http.get("/v1/jobs", params={"cursor": forged}, headers=ha), 422)
        envelope(await http.get("/v1/jobs", params={"cursor": "%%%"}, headers=ha), 422)


async def test_an_unexpected_error_is_a_500_in_the_envelope(db: Database, settings: Settings) -> None:
    app = create_app(ApiState(db=db, service=JobService(db, settings), settings=settings, blobs=LocalStorage(settings.data_dir / "blobs")))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        error = envelope(await http.get("/boom"), 500, "internal")
    assert "a bug" not in error["message"]
