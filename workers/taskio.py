"""What a task reads and writes beyond its inputs: its dependencies' stored results made
local (`ctx.deps`), and its own result stored by digest (the output's `files`)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from jobs.db import Database
from jobs.models import Job
from jobs.owners import record_owner
from jobs.packaging.media import media_type_for
from jobs.storage import Storage
from workers.executor import DepOutput, ExecutionContext, ExecutionResult

jobs_t = Job.__table__  # type: ignore[attr-defined]


def safe_relpath(rel: str) -> PurePosixPath:
    """A relative file name inside a task's output: no absolute path, no `..`, no empties."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in p.parts):
        raise ValueError(f"not a relative path inside a task's output: {rel[:100]!r}")
    return p


async def fetch_deps(
    job: Job, db: Database, blobs: Storage, ctx: ExecutionContext
) -> dict[str, DepOutput]:
    """Each dependency of a task (`spec["deps"]`: name -> task key) with its files fetched
    into the attempt's workdir (digest-checked by the store)."""
    deps: dict[str, str] = dict(job.spec.get("deps") or {})
    if not deps:
        return {}
    stmt = sa.select(jobs_t.c.key, jobs_t.c.output).where(
        jobs_t.c.tenant_id == job.tenant_id, jobs_t.c.key.in_(list(deps.values()))
    )
    async with db.reader.connect() as conn:
        outputs = {k: o for k, o in (await conn.execute(stmt)).all()}
    found: dict[str, DepOutput] = {}
    for name, key in deps.items():
        output: dict[str, Any] = dict(outputs.get(key) or {})
        base = ctx.workdir / "deps" / safe_relpath(name)
        files: dict[str, Path] = {}
        for rel, meta in dict(output.get("files") or {}).items():
            dest = base / "files" / safe_relpath(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            await blobs.fetch(str(meta["digest"]), dest)
            files[rel] = dest
        path = None
        if output.get("digest"):
            base.mkdir(parents=True, exist_ok=True)
            path = base / "output"
            await blobs.fetch(str(output["digest"]), path)
        found[name] = DepOutput(output=output, files=files, path=path)
    return found


async def store_result(
    job: Job, result: ExecutionResult, db: Database, blobs: Storage
) -> dict[str, Any]:
    """Store the result's file(s) by digest (the tenant owns them) and return the output:
    `{digest, size, media_type, ...metadata}` for a file, plus `files` for more files."""
    output: dict[str, Any] = dict(result.metadata)
    digests: list[str] = []
    if result.path is not None:
        digest, size = await blobs.put_file(result.path)
        digests.append(digest)
        output = {"digest": digest, "size": size, "media_type": result.media_type, **output}
    if result.files:
        files: dict[str, dict[str, Any]] = {}
        for rel, path in sorted(result.files.items()):
            safe_relpath(rel)
            digest, size = await blobs.put_file(path)
            digests.append(digest)
            files[rel] = {"digest": digest, "size": size, "media_type": media_type_for(rel)}
        output["files"] = files
    if digests:
        async with db.transaction() as conn:  # the tenant produced them
            for digest in digests:
                await record_owner(conn, job.tenant_id, digest)
    return output
