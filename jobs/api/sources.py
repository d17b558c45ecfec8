"""/v1/sources (uploads) and /v1/jobs/{key}/output (results)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import FileResponse, JSONResponse

from jobs.api import deps
from jobs.api.routes import ERRORS, checked_key
from jobs.db import insert_on_conflict
from jobs.errors import InvalidRequest, JobNotFound
from jobs.models import Blob
from jobs.tenants import TenantRef

router = APIRouter(tags=["sources"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]
blobs_table = Blob.__table__  # type: ignore[attr-defined]
_MEDIA_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]{1,60}$")


@router.post("/v1/sources", status_code=201, responses=ERRORS)
async def upload_source(
    request: Request,
    tenant: Tenant,
    content_type: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Stream a file into the blob store (hashed on the way), probe it, return its digest."""
    st = deps.state(request)
    digest, size, tmp = await st.blobs.put_stream(request.stream(), st.max_upload_bytes)
    try:
        if size == 0:
            raise InvalidRequest(
                "the upload is empty",
                details=[{"path": "body", "message": "no bytes", "allowed": "a video file"}],
            )
        probe: dict[str, Any] | None = None
        if st.probe is not None:
            probe = await asyncio.to_thread(st.probe, tmp)
        await asyncio.to_thread(st.blobs.install_temp, tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)
    media = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not _MEDIA_TYPE.match(media):
        media = "application/octet-stream"
    async with st.db.transaction() as conn:
        await conn.execute(
            insert_on_conflict(conn, blobs_table)
            .on_conflict_do_nothing()
            .values(digest=digest, size=size, media_type=media, probe=probe)
        )
    return JSONResponse({"digest": digest, "size": size, "probe": probe}, status_code=201)


@router.get("/v1/jobs/{key}/output", responses=ERRORS, response_model=None)
async def job_output(request: Request, tenant: Tenant, key: str) -> FileResponse:
    """The finished file of a succeeded job (Range requests are honoured)."""
    st = deps.state(request)
    job = await st.service.get(tenant, checked_key(key))
    if job.status != "succeeded" or not job.output:
        raise JobNotFound(f"job {key} has no output (it is {job.status})")
    if "digest" not in job.output:
        raise JobNotFound(f"job {key} made no file; its result is the job's `output` metadata")
    path = st.blobs.path_for(str(job.output["digest"]))
    if not path.is_file():
        raise JobNotFound(f"the output of job {key} is no longer stored")
    media = str(job.output.get("media_type") or "application/octet-stream")
    ext = {
        "video/mp4": "mp4",
        "video/webm": "webm",
        "video/x-matroska": "mkv",
        "video/quicktime": "mov",
        "image/gif": "gif",
        "image/jpeg": "jpg",
        "image/png": "png",
    }.get(media, "bin")
    return FileResponse(path, media_type=media, filename=f"{key}.{ext}")
