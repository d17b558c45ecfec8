"""Chunked packages and chunked downloads end to end: the real ffmpeg under the real worker
loop (SQLite and a real PostgreSQL). A chunked 2-rung HLS package plays (m3u8 parses the
playlists, every segment decodes alone, the rungs cut their segments at the same frames,
every source frame is there once); a DASH package of the same bytes and chunking reuses
every chunk; a chunked single-output job's result downloaded through
`GET /v1/jobs/{key}/output` holds every source frame once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, issue_token
from tests.e2e.test_chunked_ffmpeg import chunked_edit, clip, frame_hashes, upload
from tests.e2e.test_video_jobs import _ffmpeg
from tests.integration.test_runner import blobs, make_runner, running, wait_for
from tests.support.packages import make_source
from workers.executor import ExecutorRegistry

__all__ = ["blobs", "clip"]

pytestmark = pytest.mark.ffmpeg

LADDER = [{"height": 360, "video_bitrate_kbps": 800}, {"height": 180, "video_bitrate_kbps": 300}]
RUNGS = ("rung-360", "rung-180")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 25 fps (150 frames), 640x360 h264 + 48 kHz aac."""
    out = make_source(_ffmpeg(), tmp_path_factory.mktemp("chunkpkg") / "six.mp4", 6, "640x360")
    out.chmod(0o444)
    return out


def registry() -> ExecutorRegistry:
    from workers.ffmpeg import packaging_executors
    from workers.ffmpeg.chunked import chunked_executors
    from workers.ffmpeg.executor import FfmpegExecutor
    from workers.ffmpeg.rungchunks import rung_chunk_executors

    edit = FfmpegExecutor()
    kinds = {**packaging_executors(None), **chunked_executors(edit), **rung_chunk_executors()}
    return ExecutorRegistry(edit, **kinds)


def package_edit(digest: str, fmt: str) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"digest": digest},
            "package": {"format": fmt, "segment_seconds": 1, "ladder": LADDER},
            # 2.4 s is 2 whole 1 s segments: chunks of 50 frames, 3 per rung
            "chunking": {"mode": "on", "chunk_seconds": 2.4},
        }
    )


def frames_of(path: Path) -> list[dict[str, Any]]:
    argv = [
        _ffmpeg().replace("ffmpeg", "ffprobe"), "-v", "error", "-select_streams", "v:0",
        "-show_entries", "frame=pts_time,key_frame", "-of", "json", str(path),
    ]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, timeout=120, text=True).stdout
    frames: list[dict[str, Any]] = json.loads(out)["frames"]
    return frames


def decodes(path: Path) -> None:
    argv = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def materialize(blobs: LocalStorage, files: dict[str, Any], into: Path) -> Path:
    """A package's files under their names, read from the store by digest."""
    into.mkdir()
    for name, meta in files.items():
        (into / name).write_bytes(blobs.path_for(meta["digest"]).read_bytes())
    return into


async def run_until_done(
    db: Database, service: JobService, settings: Settings, blobs: LocalStorage,
    tenant: TenantRef, key: str,
) -> Any:  # fmt: skip
    runner, _ = make_runner(db, settings, blobs, registry(), concurrency=2)
    async with running(runner):
        done = await wait_for(service, tenant, key, {"succeeded", "failed"}, timeout=420)
    assert done.status == "succeeded", done.error_message
    return done


async def test_a_chunked_two_rung_hls_package_plays_with_equal_segments_and_every_frame(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage, source: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    service = JobService(db, settings)
    digest = await upload(db, blobs, tenant, source)
    job = (await service.submit(tenant, package_edit(digest, "hls"))).job
    done = await run_until_done(db, service, settings, blobs, tenant, job.key)
    tasks = {m.name: m for m in (await service.tasks(tenant, job.key))[1]}
    chunk_names = {f"{r}-chunk-{i:04d}" for r in RUNGS for i in range(3)}
    assert set(tasks) == chunk_names | {"audio", *RUNGS, "package"}
    assert all(tasks[n].task.output["frames"] == 50 for n in chunk_names)
    assert tasks["package"].depends_on == list(RUNGS)
    for rung in RUNGS:
        assert tasks[rung].kind == "rung-stitch" and tasks[rung].task.output["frames"] == 150
    pkg = done.output["package"]
    root = materialize(blobs, pkg["files"], tmp_path / "pkg")
    master = m3u8.load(str(root / pkg["manifests"]["hls"]))
    assert master.is_variant and len(master.playlists) == 2
    assert sorted(p.stream_info.resolution for p in master.playlists) == [(320, 180), (640, 360)]
    cuts: list[list[float]] = []
    for variant in master.playlists:
        media = m3u8.load(str(root / variant.uri))
        assert media.is_endlist and len(media.segments) == 6
        starts, total = [], 0
        for seg in media.segments:
            path = root / seg.uri
            decodes(path)  # every segment plays alone
            frames = frames_of(path)
            assert frames[0]["key_frame"] == 1  # a segment starts on a keyframe
            starts.append(round(float(frames[0]["pts_time"]), 3))
            total += len(frames)
        assert total == 150  # every source frame once (25 fps in, 25 fps out)
        cuts.append(starts)
    assert cuts[0] == cuts[1]  # the rungs switch at the same instants
    assert [round(s - cuts[0][0], 3) for s in cuts[0]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    rendition = tasks["rung-360"].task.output["files"]["rendition.mp4"]["digest"]
    streams = [s["codec_type"] for s in _streams(blobs.path_for(rendition))]
    assert streams == ["video", "audio"]  # the audio was encoded once and muxed per rung
    # The 360p rung is the source's own size: each of its frames is the source frame at the
    # same place (~40 dB; a frame off by one at a chunk boundary is ~25 dB on this pattern).
    psnr = per_frame_psnr(blobs.path_for(rendition), source, tmp_path / "psnr.txt")
    assert len(psnr) == 150 and min(psnr) >= 32, sorted(psnr)[:5]


def per_frame_psnr(made: Path, reference: Path, stats: Path) -> list[float]:
    argv = [
        _ffmpeg(), "-nostdin", "-v", "error", "-i", str(made), "-i", str(reference),
        "-lavfi", f"[0:v][1:v]psnr=stats_file={stats.name}", "-f", "null", "-",
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd=stats.parent)
    fields = [dict(f.split(":", 1) for f in line.split()) for line in stats.read_text().splitlines()]
    return [float(f["psnr_avg"]) for f in fields]


def _streams(path: Path) -> list[dict[str, Any]]:
    argv = [_ffmpeg().replace("ffmpeg", "ffprobe"), "-v", "error", "-show_streams", "-of",
            "json", str(path)]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, timeout=60, text=True).stdout
    streams: list[dict[str, Any]] = json.loads(out)["streams"]
    return streams


async def api(
    db: Database, service: JobService, settings: Settings, blobs: LocalStorage, tenant: TenantRef
) -> tuple[Any, str]:
    """The real API app over this database and store, and a token of `tenant`."""
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=blobs))
    async with db.transaction() as conn:
        token = await issue_token(conn, tenant.id)
    return app, token


def _client(app: Any, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_a_second_package_of_the_same_chunks_reuses_every_chunk_task(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage, source: Path,
) -> None:  # fmt: skip
    service = JobService(db, settings)
    app, token = await api(db, service, settings, blobs, tenant)
    digest = await upload(db, blobs, tenant, source)
    first = (await service.submit(tenant, package_edit(digest, "hls"))).job
    await run_until_done(db, service, settings, blobs, tenant, first.key)
    second = (await service.submit(tenant, package_edit(digest, "dash"))).job
    assert second.key != first.key and second.status == "waiting"  # only the package to run
    await run_until_done(db, service, settings, blobs, tenant, second.key)
    async with _client(app, token) as http:
        one = (await http.get(f"/v1/jobs/{first.key}/tasks")).json()["tasks"]
        two = (await http.get(f"/v1/jobs/{second.key}/tasks")).json()["tasks"]
        view = (await http.get(f"/v1/jobs/{second.key}")).json()
    before = {t["name"]: t for t in one}
    after = {t["name"]: t for t in two}
    assert set(before) == set(after)
    shared = {n for n in after if n != "package"}
    assert len([n for n in shared if "-chunk-" in n]) == 6
    for name in shared:
        assert after[name]["reused"] is True, name
        assert after[name]["key"] == before[name]["key"] and after[name]["attempts"] == 1
    assert after["package"]["reused"] is False and after["package"]["key"] != before["package"]["key"]
    assert set(view["tasks"]["reused"]) == shared
    assert view["chunking"]["chunked"] is True and "per rung" in view["chunking"]["reason"]
    assert view["output"]["package"]["manifests"] == {"dash": "manifest.mpd"}


async def test_a_chunked_output_downloads_through_the_api_with_every_frame_once(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage, clip: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    service = JobService(db, settings)
    app, token = await api(db, service, settings, blobs, tenant)
    digest = await upload(db, blobs, tenant, clip)
    job = (await service.submit(tenant, chunked_edit(digest))).job  # lossless, 2 s chunks
    done = await run_until_done(db, service, settings, blobs, tenant, job.key)
    assert done.output["chunks"] == 4 and done.output["frames"] == 175
    async with _client(app, token) as http:
        got = await http.get(f"/v1/jobs/{job.key}/output")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("video/mp4")
    path = tmp_path / "downloaded.mp4"
    path.write_bytes(got.content)
    assert len(got.content) == done.output["size"]
    assert frame_hashes(path) == frame_hashes(clip)  # each source frame once, in order


async def test_an_edit_that_differs_only_in_its_audio_reuses_the_video_chunks(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage, clip: Path,
) -> None:  # fmt: skip
    service = JobService(db, settings)
    digest = await upload(db, blobs, tenant, clip)
    first = (await service.submit(tenant, chunked_edit(digest))).job  # volume -3 dB
    await run_until_done(db, service, settings, blobs, tenant, first.key)
    body = chunked_edit(digest).model_dump(mode="json", exclude_unset=True)
    body["operations"] = [{"op": "volume", "db": -9}]
    second = (await service.submit(tenant, EditRequest.model_validate(body))).job
    assert second.key != first.key
    done = await run_until_done(db, service, settings, blobs, tenant, second.key)
    before = {m.name: m for m in (await service.tasks(tenant, first.key))[1]}
    after = {m.name: m for m in (await service.tasks(tenant, second.key))[1]}
    chunk_names = {f"chunk-{i:04d}" for i in range(4)}
    assert {n for n, m in after.items() if m.reused} == chunk_names
    for name in chunk_names:
        assert after[name].task.key == before[name].task.key and after[name].task.attempts == 1
    assert after["audio"].task.key != before["audio"].task.key  # the new volume: new audio
    assert frame_hashes(blobs.path_for(done.output["digest"])) == frame_hashes(clip)


async def test_on_refuses_named_outputs_beside_a_package_naming_them(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    service = JobService(db, settings)
    app, token = await api(db, service, settings, blobs, tenant)
    body = {
        "source": {"path": "clip.mp4"},
        "outputs": [{"name": "mp4"}],
        "package": {"format": "hls", "ladder": LADDER},
        "chunking": {"mode": "on"},
    }
    async with _client(app, token) as http:
        r = await http.post("/v1/jobs", json=body)
        listed = (await http.get("/v1/jobs")).json()
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] and any(d.get("path") == "outputs" for d in error["details"]), error
    assert "named outputs" in str(error)
    assert listed["jobs"] == []  # nothing was written
