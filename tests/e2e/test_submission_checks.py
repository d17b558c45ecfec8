"""Submission-time checks against the sources' probes, through the API: an edit that cannot
work on its sources is a 422 naming the operation or source, and no job is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.models import Job
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant
from tests.e2e.test_uploads_and_hostile import ffmpeg


@pytest.fixture
async def http(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the checks `vidjobs up` and `serve` install (no worker: nothing runs)."""
    from workers.compose import ffmpeg_plan_check, ffmpeg_source_check, make_probe

    service = JobService(
        db,
        settings,
        check_source=ffmpeg_source_check(settings),
        check_plan=ffmpeg_plan_check(),
    )
    blobs = LocalStorage(settings.data_dir / "blobs")
    state = ApiState(db=db, service=service, settings=settings, blobs=blobs, probe=make_probe())
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "checker")
    transport = httpx.ASGITransport(app=create_app(state))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


@pytest.fixture
def files(source_root: Path) -> dict[str, Path]:
    from workers.ffmpeg.testmedia import make_clip, make_image

    exe = ffmpeg()
    return {
        "clip": make_clip(source_root / "av.mp4", seconds=1, ffmpeg=exe),
        "silent": make_clip(source_root / "silent.mp4", seconds=1, audio=False, ffmpeg=exe),
        "logo": make_image(source_root / "logo.png", size="64x32", ffmpeg=exe),
    }


async def upload(http: httpx.AsyncClient, path: Path, media_type: str) -> str:
    r = await http.post(
        "/v1/sources", content=path.read_bytes(), headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text
    digest: str = r.json()["digest"]
    return digest


async def refused(http: httpx.AsyncClient, db: Database, body: dict[str, Any]) -> dict[str, Any]:
    async with db.reader.connect() as conn:
        before = (await conn.execute(sa.select(sa.func.count()).select_from(Job))).scalar()
    r = await http.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    async with db.reader.connect() as conn:
        after = (await conn.execute(sa.select(sa.func.count()).select_from(Job))).scalar()
    assert after == before  # nothing stored
    error: dict[str, Any] = r.json()["error"]
    return error


async def source(
    http: httpx.AsyncClient, files: dict[str, Path], name: str, by: str
) -> dict[str, str]:
    """`files[name]` as a source: uploaded (by digest) or by its path under the source root."""
    if by == "path":
        return {"path": files[name].name}
    media_type = "image/png" if files[name].suffix == ".png" else "video/mp4"
    return {"digest": await upload(http, files[name], media_type)}


def mark(source: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"op": "watermark", "source": source, **fields}


@pytest.mark.parametrize("by", ["digest", "path"])
async def test_a_watermark_entirely_outside_the_frame_is_refused_naming_it(
    http: httpx.AsyncClient, db: Database, files: dict[str, Path], by: str
) -> None:
    clip, logo = await source(http, files, "clip", by), await source(http, files, "logo", by)
    # 320x240 scaled to 160x120: a margin of 200 puts the whole 64x32 mark past the edge.
    ops = [{"op": "scale", "width": 160}, mark(logo, position="top_left", margin=200)]
    error = await refused(http, db, {"source": clip, "operations": ops})
    detail = error["details"][0]
    assert detail["path"] == "operations[1]"
    assert "entirely outside the 160x120 frame" in detail["message"]
    # Without the scale the same mark is partly inside the 320x240 frame: accepted.
    ok = await http.post("/v1/jobs", json={"source": clip, "operations": ops[1:]})
    assert ok.status_code == 201, ok.text
    for position in ("bottom_right", "top_right", "bottom_left"):
        far = [mark(logo, position=position, margin=400)]
        error = await refused(http, db, {"source": clip, "operations": far})
        assert error["details"][0]["path"] == "operations[0]"


async def test_a_crop_outside_the_frame_after_a_rotate_is_refused(
    http: httpx.AsyncClient, db: Database, files: dict[str, Path]
) -> None:
    clip = await source(http, files, "clip", "digest")
    ops = [{"op": "rotate", "degrees": 90}, {"op": "crop", "width": 300, "height": 200}]
    error = await refused(http, db, {"source": clip, "operations": ops})
    assert error["details"][0]["path"] == "operations[1]"
    assert "does not fit in the 240x320 frame" in error["details"][0]["message"]
    fits = [{"op": "rotate", "degrees": 90}, {"op": "crop", "width": 200, "height": 300}]
    assert (
        await http.post("/v1/jobs", json={"source": clip, "operations": fits})
    ).status_code == 201


@pytest.mark.parametrize("by", ["digest", "path"])
async def test_an_edit_needing_audio_from_a_silent_source_is_refused(
    http: httpx.AsyncClient, db: Database, files: dict[str, Path], by: str
) -> None:
    silent = await source(http, files, "silent", by)
    body = {"source": silent, "output": {"container": "mp3"}}
    error = await refused(http, db, body)
    assert error["details"][0]["path"] == "source"
    assert "needs audio" in error["message"]
    norm = {"source": silent, "operations": [{"op": "loudnorm"}]}
    assert (await refused(http, db, norm))["details"][0]["path"] == "source"
    video = await http.post("/v1/jobs", json={"source": silent, "operations": [{"op": "mute"}]})
    assert video.status_code == 201, video.text
