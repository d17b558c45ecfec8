"""Pinned source content: a worker encodes only bytes whose digest equals the key's.

Path sources are re-opened and re-verified by the worker (no symlink out of the roots);
blob sources are streamed from storage (local directory or a real S3 server) and verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from jobs.db import Database
from jobs.keys import DigestCache
from jobs.owners import record_owner
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage, Storage
from jobs.tenants import TenantRef
from tests.integration.test_runner import make_runner, running, wait_for
from workers.executor import ExecutionContext, ExecutionResult


class ReadingExecutor:
    """Records the bytes of every input it is handed, then writes them out as its output."""

    def __init__(self) -> None:
        self.seen: dict[str, list[bytes]] = {}

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        data = [p.read_bytes() for p in ctx.inputs]
        assert all(p.is_relative_to(ctx.workdir) for p in ctx.inputs)  # private copies
        self.seen[ctx.job.key] = data
        out = ctx.workdir / "out.bin"
        out.write_bytes(b"".join(data))
        return ExecutionResult(path=out, media_type="application/octet-stream")


def edit(source: dict[str, Any], i: int = 0) -> EditRequest:
    return EditRequest.model_validate(
        {"source": source, "operations": [{"op": "trim", "start": i, "end": i + 1}]}
    )


async def run_one(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, store: Storage,
    req: EditRequest, executor: Any, *, before_run: Any = None,
) -> Any:
    key = (await service.submit(tenant, req)).job.key
    if before_run is not None:
        before_run()
    runner, _ = make_runner(db, settings, store, executor)  # type: ignore[arg-type]
    async with running(runner):
        return await wait_for(service, tenant, key, {"succeeded", "failed"})


async def test_a_blob_source_is_streamed_from_storage_and_the_output_stored_there(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, store: Storage,
    tmp_path: Path,
) -> None:
    data = os.urandom(200_000)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(data)
    digest, _ = await store.put_file(upload)
    async with db.transaction() as conn:
        await record_owner(conn, tenant.id, digest)
    executor = ReadingExecutor()
    job = await run_one(db, service, tenant, settings, store, edit({"digest": digest}), executor)
    assert job.status == "succeeded", job.error_message
    assert executor.seen[job.key] == [data]
    assert job.output["digest"] == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert await store.exists(job.output["digest"])


async def test_a_tenant_may_use_its_own_outputs_as_sources_and_no_one_else_may(
    db: Database, service: JobService, tenant: TenantRef, other_tenant: TenantRef,
    settings: Settings, source_root: Path,
) -> None:
    from jobs.errors import SourceNotFound

    store = LocalStorage(settings.data_dir / "blobs")
    job = await run_one(db, service, tenant, settings, store, edit({"path": "clip.mp4"}), ReadingExecutor())
    produced = job.output["digest"]
    assert (await service.submit(tenant, edit({"digest": produced}, 7))).created
    with pytest.raises(SourceNotFound):
        await service.submit(other_tenant, edit({"digest": produced}, 7))


async def test_a_corrupted_blob_fails_source_changed_and_stores_nothing(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, tmp_path: Path
) -> None:
    store = LocalStorage(settings.data_dir / "blobs")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"original" * 1000)
    digest, _ = await store.put_file(upload)
    async with db.transaction() as conn:
        await record_owner(conn, tenant.id, digest)
    stored = store.path_for(digest)
    stored.chmod(0o644)
    stored.write_bytes(b"tampered" * 1000)
    executor = ReadingExecutor()
    job = await run_one(db, service, tenant, settings, store, edit({"digest": digest}), executor)
    assert (job.status, job.error_code) == ("failed", "source_changed")
    assert executor.seen == {}
    assert job.attempts == 1  # permanent: no retry


@pytest.mark.parametrize("change", ["rewritten", "deleted", "symlink", "dir_symlink"])
async def test_a_path_source_changed_after_submission_fails_source_changed(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings,
    source_root: Path, tmp_path: Path, change: str,
) -> None:
    sub = source_root / "sub"
    sub.mkdir()
    clip = sub / "clip.mp4"
    original = b"the submitted bytes " * 500
    clip.write_bytes(original)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "clip.mp4").write_bytes(original)  # same bytes even: still refused

    def mutate() -> None:
        if change == "rewritten":  # same size, same mtime
            st = clip.stat()
            clip.write_bytes(b"X" * len(original))
            os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif change == "deleted":
            clip.unlink()
        elif change == "symlink":
            clip.unlink()
            clip.symlink_to(outside / "clip.mp4")
        else:
            os.rename(sub, source_root / "moved")
            sub.symlink_to(outside)

    store = LocalStorage(settings.data_dir / "blobs")
    executor = ReadingExecutor()
    job = await run_one(
        db, service, tenant, settings, store, edit({"path": "sub/clip.mp4"}), executor,
        before_run=mutate,
    )
    assert (job.status, job.error_code) == ("failed", "source_changed"), job.error_message
    assert job.output is None
    assert executor.seen == {}  # ffmpeg (here: the executor) never ran
    assert not (store.root / "sha256").exists()  # nothing was stored
    assert "changed after the job was submitted" in (job.error_message or "")


async def test_a_failed_key_resubmitted_runs_on_its_current_inputs(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, source_root: Path,
) -> None:
    """The file is put back as it was: the same key runs again, on the bytes it names."""
    clip = source_root / "clip.mp4"
    original = clip.read_bytes()
    store = LocalStorage(settings.data_dir / "blobs")
    executor = ReadingExecutor()
    req = edit({"path": "clip.mp4"})
    job = await run_one(
        db, service, tenant, settings, store, req, executor,
        before_run=lambda: clip.write_bytes(b"other bytes"),
    )
    assert job.error_code == "source_changed"
    # Submitting now names the new content: another key, run on the new bytes.
    changed = await service.submit(tenant, req)
    assert changed.job.key != job.key
    clip.write_bytes(original)
    again = await service.submit(tenant, req)
    assert again.job.key == job.key and again.rerun
    runner, _ = make_runner(db, settings, store, executor)
    async with running(runner):
        done = await wait_for(service, tenant, job.key, {"succeeded", "failed"})
    assert done.status == "succeeded"
    assert executor.seen[job.key] == [original]


def test_the_digest_cache_sees_a_same_size_same_mtime_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "f.mp4"
    path.write_bytes(b"A" * 4096)
    cache = DigestCache()
    first = cache.digest(path)
    st = path.stat()
    with path.open("r+b") as f:  # in place: same inode, same size
        f.write(b"B" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_ino == st.st_ino
    assert cache.cached(path) is None
    assert cache.digest(path) == f"sha256:{hashlib.sha256(b'B' * 4096).hexdigest()}" != first


async def test_another_tenants_digest_is_refused_exactly_like_an_unknown_one(
    db: Database, service: JobService, tenant: TenantRef, other_tenant: TenantRef,
    settings: Settings, tmp_path: Path,
) -> None:
    from jobs.errors import SourceNotFound

    store = LocalStorage(settings.data_dir / "blobs")
    upload = tmp_path / "u.bin"
    upload.write_bytes(b"tenant one's file")
    digest, _ = await store.put_file(upload)
    async with db.transaction() as conn:
        await record_owner(conn, tenant.id, digest)
    await service.submit(tenant, edit({"digest": digest}))  # its owner may

    async def refusal(d: str) -> tuple[str, str, Any]:
        with pytest.raises(SourceNotFound) as caught:
            await service.submit(other_tenant, edit({"digest": d}))
        return caught.value.code, caught.value.message, caught.value.details

    assert await refusal(digest) == await refusal("sha256:" + "0" * 64)
    await asyncio.sleep(0)
