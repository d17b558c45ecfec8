"""/v1/sources (uploads) and /v1/jobs/{key}/output (results)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs import owners
from jobs.api import deps
from jobs.api.routes import ERRORS, checked_key
from jobs.db import insert_on_conflict
from jobs.errors import (
    BlobMissing,
    InvalidRequest,
    JobNotFound,
    OutputExpired,
    RangeNotSatisfiable,
)
from jobs.models import Blob, Job
from jobs.tenants import TenantRef
from jobs.url_import import Allow, fetch_url

router = APIRouter(tags=["sources"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]
blobs_table = Blob.__table__  # type: ignore[attr-defined]
_MEDIA_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]{1,60}$")
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_EXT = {
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "video/quicktime": "mov",
    "image/gif": "gif",
    "image/jpeg": "jpg",
    "image/png": "png",
}


@router.post("/v1/sources", status_code=201, responses=ERRORS)
async def upload_source(
    request: Request,
    tenant: Tenant,
    content_type: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Stream a file into storage (hashed on the way), probe it, return its digest.

    With `Content-Type: application/json` and `{"url": "https://..."}`, the server fetches
    the file itself (SSRF-guarded). The caller becomes an owner of the digest: only owners
    can use it in a job."""
    st = deps.state(request)
    if media_type(content_type) == "application/json":  # {"url": ...}: an import
        target = await _import_request(request)
        digest, size, tmp, remote_type = await fetch_url(
            target.url,
            st.blobs,
            allow=Allow(st.settings.url_source_allow),
            max_bytes=st.max_upload_bytes,
            time_cap=st.settings.url_source_timeout_seconds,
        )
        body = await adopt(st, tenant, tmp, digest, size, media_type(remote_type))
        return JSONResponse(body, status_code=201)
    digest, size, tmp = await st.blobs.receive(request.stream(), st.max_upload_bytes)
    body = await adopt(st, tenant, tmp, digest, size, media_type(content_type))
    return JSONResponse(body, status_code=201)


class UrlSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


async def _import_request(request: Request) -> UrlSource:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > 16 * 1024:
            raise InvalidRequest(
                "a JSON body of POST /v1/sources is an import request: {\"url\": ...}",
                details=[{"path": "body", "message": "over 16 KiB", "allowed": '{"url": "https://..."}'}],
            )
    try:
        return UrlSource.model_validate_json(bytes(raw))
    except ValidationError as exc:
        raise InvalidRequest(
            "a JSON body of POST /v1/sources must be {\"url\": \"https://...\"}",
            details=[
                {"path": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in exc.errors()
            ],
        ) from None


def media_type(value: str | None) -> str:
    media = (value or "application/octet-stream").split(";")[0].strip().lower()
    return media if _MEDIA_TYPE.match(media) else "application/octet-stream"


async def adopt(
    st: deps.ApiState, tenant: TenantRef, tmp: Path, digest: str, size: int, media: str
) -> dict[str, Any]:
    """Probe a received file, store it by digest, make the tenant an owner (`tmp` is
    consumed). Answers {digest, size, probe}."""
    try:
        if size == 0:
            raise InvalidRequest(
                "the upload is empty",
                details=[{"path": "body", "message": "no bytes", "allowed": "a video file"}],
            )
        probe: dict[str, Any] | None = None
        if st.probe is not None:
            probe = await asyncio.to_thread(st.probe, tmp)
        await st.blobs.put_file(tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink
    async with st.db.transaction() as conn:
        await conn.execute(
            insert_on_conflict(conn, blobs_table)
            .on_conflict_do_nothing()
            .values(digest=digest, size=size, media_type=media, probe=probe)
        )
        await owners.record_owner(conn, tenant.id, digest)
    return {"digest": digest, "size": size, "probe": probe}


@router.get(
    "/v1/jobs/{key}/output",
    responses={**ERRORS, 206: {"description": "a byte range"}, 307: {"description": "redirect"}},
    response_model=None,
)
async def job_output(
    request: Request,
    tenant: Tenant,
    key: str,
    redirect: Annotated[bool, Query(description="S3 storage: 307 to a presigned URL")] = True,
) -> FileResponse | RedirectResponse | StreamingResponse:
    """The finished file of a succeeded job (Range requests are honoured).

    On S3 storage the answer is a 307 to a short-lived presigned URL; `redirect=false`
    streams the bytes through the API instead. A range is served the same way by both
    stores (one range; a suffix; 416 past the end)."""
    st = deps.state(request)
    job = await st.service.get(tenant, checked_key(key))
    return await output_response(request, st, job, redirect=redirect)


async def output_response(
    request: Request, st: deps.ApiState, job: Job, *, redirect: bool
) -> FileResponse | RedirectResponse | StreamingResponse:
    """The answer of `GET /v1/jobs/{key}/output` for a job already looked up (the console
    serves outputs through this too)."""
    key = job.key
    if job.status != "succeeded" or not job.output:
        raise JobNotFound(f"job {key} has no output (it is {job.status})")
    return await serve_output(request, st, key, job.output, key, redirect)


async def serve_output(
    request: Request,
    st: deps.ApiState,
    key: str,
    output: dict[str, Any],
    stem: str,
    redirect: bool,
) -> FileResponse | RedirectResponse | StreamingResponse:
    """One stored output file (`output`: its digest, size, media type), downloaded as
    `<stem>.<ext>`: a file, a presigned redirect, or a byte range."""
    if output.get("expired"):
        raise OutputExpired(
            f"the output of job {key} expired and was deleted; submit the same edit again "
            "to run it again (same key)",
            details={"key": key},
        )
    if "digest" not in output:
        raise JobNotFound(f"job {key} made no file; its result is the job's `output` metadata")
    digest = str(output["digest"])
    media = str(output.get("media_type") or "application/octet-stream")
    filename = f"{stem}.{_EXT.get(media, 'bin')}"
    gone = JobNotFound(f"the output of job {key} is no longer stored")
    path = st.blobs.local_path(digest)
    if path is not None and "range" not in request.headers:
        if not path.is_file():
            raise gone
        return FileResponse(path, media_type=media, filename=filename)
    if path is None and redirect:
        if not await st.blobs.exists(digest):
            raise gone
        url = await st.blobs.presign_get(
            digest, expires=st.settings.download_url_seconds, filename=filename, media_type=media
        )
        assert url is not None
        return RedirectResponse(url, status_code=307)
    start, end, partial = _parse_range(request.headers.get("range"))
    try:
        part = await st.blobs.read_range(digest, start, end)
    except BlobMissing:
        raise gone from None
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(part.end - part.start + 1),
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if partial:
        headers["Content-Range"] = f"bytes {part.start}-{part.end}/{part.total}"
    return StreamingResponse(
        part.chunks, status_code=206 if partial else 200, media_type=media, headers=headers
    )


router.add_api_route(  # HEAD: the GET's status and headers, no body
    "/v1/jobs/{key}/output",
    job_output,
    methods=["HEAD"],
    include_in_schema=False,
    response_model=None,
)


def _parse_range(header: str | None) -> tuple[int, int | None, bool]:
    """(start, end or None, partial?) of a single-range header; anything else: the whole
    file. A suffix range (`bytes=-N`) has a negative start."""
    m = _RANGE.match((header or "").strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return 0, None, False
    first, last = m.group(1), m.group(2)
    if not first:
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("a suffix range of 0 bytes selects nothing")
        return -n, None, True
    start, end = int(first), (int(last) if last else None)
    if end is not None and end < start:
        return 0, None, False  # invalid: RFC 9110 says ignore the header
    return start, end, True
