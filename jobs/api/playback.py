"""Packages and sprites over HTTP: signed playback URLs and authenticated downloads.

`GET /v1/jobs/{key}/playback` answers `{"url", "expires_at", ...}`: a URL with a signed,
expiring, tenant-bound token in its path (`/play/<token>/master.m3u8`), so a player needs no
bearer token and every relative playlist, segment and sprite URI resolves under the same
token. Files are read from the job's own `output["package"]["files"]` (or
`["thumbnails"]["files"]`) through the storage port, by digest; a name that is not in that
manifest does not exist. Answers carry the content type players expect, CORS headers, and
honour Range. With VIDJOBS_PLAYBACK_REDIRECT on S3, segments are 307s to presigned URLs.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from jobs.api import deps
from jobs.api.errors import error_body
from jobs.api.routes import ERRORS, checked_key
from jobs.api.sources import _parse_range
from jobs.errors import BlobMissing, JobNotFound, OutputExpired, VidjobsError
from jobs.models import Job
from jobs.packaging.media import FILE_NAME, media_type_for
from jobs.packaging.tokens import playback_secret, sign, verify
from jobs.settings import Settings
from jobs.tenants import TenantRef

router = APIRouter(tags=["playback"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range",
    "Access-Control-Max-Age": "86400",
}
_MANIFESTS = (".m3u8", ".mpd", ".vtt")  # always served here, so relative URIs stay ours
_RANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    206: {"description": "a byte range"},
    307: {"description": "redirect"},
    403: {"description": "invalid or expired token"},
}


def published(job: Job, part: str) -> dict[str, Any]:
    """`job.output[part]` ("package" or "thumbnails") of a succeeded job, or a 404."""
    output = job.output if job.status == "succeeded" else None
    if output and output.get("expired"):
        raise OutputExpired(f"the outputs of job {job.key} expired and were deleted")
    found = (output or {}).get(part)
    if not isinstance(found, dict) or not isinstance(found.get("files"), dict):
        raise JobNotFound(f"job {job.key} has no {part} (it is {job.status})")
    return found


def _ts(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


@router.get("/v1/jobs/{key}/playback", responses=ERRORS)
async def playback(request: Request, tenant: Tenant, key: str) -> dict[str, Any]:
    """A signed, expiring playback URL of the job's package (HLS master if it has one, else
    the DASH MPD), every manifest's URL, and the sprites' WebVTT index when there is one."""
    st = deps.state(request)
    job = await st.service.get(tenant, checked_key(key))
    return playback_urls(st.settings, tenant, job, str(request.base_url))


def playback_urls(settings: Settings, tenant: TenantRef, job: Job, origin: str) -> dict[str, Any]:
    """The playback answer of a succeeded package job, its URLs under `origin` (the API's
    own base URL; the console's player uses it too)."""
    package = published(job, "package")
    expires = int(time.time()) + settings.playback_url_seconds
    token = sign(playback_secret(settings), tenant.id, job.key, expires)
    base = f"{origin.rstrip('/')}/play/{token}"
    manifests = {kind: f"{base}/{name}" for kind, name in package.get("manifests", {}).items()}
    thumbs = (job.output or {}).get("thumbnails")
    vtt = thumbs.get("vtt") if isinstance(thumbs, dict) else None
    return {
        "url": manifests.get("hls") or manifests.get("dash"),
        "expires_at": _ts(expires),
        "manifests": manifests,
        "thumbnails": f"{base}/thumbnails/{vtt}" if vtt else None,
    }


async def _played(request: Request, token: str, part: str, name: str) -> Response:
    st = deps.state(request)
    try:
        grant = verify(playback_secret(st.settings), token)
        # The token's own tenant and job: no other tenant's job can be named by it.
        job = await st.service.get(TenantRef(id=grant.tenant_id, name=""), grant.key)
        ttl = max(1, min(3600, grant.expires - int(time.time())))
        headers = {**CORS, "Cache-Control": f"private, max-age={ttl}"}
        redirect = st.settings.playback_redirect
        return await serve(request, published(job, part), name, headers=headers, redirect=redirect)
    except VidjobsError as exc:  # with CORS headers, so a browser player can read why
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.http_status, headers=CORS
        )


@router.get("/play/{token}/{name}", responses=_RANGE_RESPONSES, response_model=None)
@router.head("/play/{token}/{name}", include_in_schema=False, response_model=None)
async def play_package(request: Request, token: str, name: str) -> Response:
    """A file of the package (playlist, manifest, init or media segment) by a playback URL."""
    return await _played(request, token, "package", name)


@router.get("/play/{token}/thumbnails/{name}", responses=_RANGE_RESPONSES, response_model=None)
@router.head("/play/{token}/thumbnails/{name}", include_in_schema=False, response_model=None)
async def play_thumbnails(request: Request, token: str, name: str) -> Response:
    """A sprite sheet or the WebVTT index of the job's thumbnails by a playback URL."""
    return await _played(request, token, "thumbnails", name)


@router.options("/play/{token}/{rest:path}", include_in_schema=False)
async def play_preflight(token: str, rest: str) -> Response:
    """CORS preflight (a player asking to send Range)."""
    return Response(status_code=204, headers=PREFLIGHT)


@router.get("/v1/jobs/{key}/package/{name}", responses=_RANGE_RESPONSES, response_model=None)
async def package_file(
    request: Request,
    tenant: Tenant,
    key: str,
    name: str,
    redirect: Annotated[bool, Query(description="S3 storage: 307 to a presigned URL")] = True,
) -> Response:
    """A file of the job's package, with the bearer token (Range honoured)."""
    return await _authenticated(request, tenant, key, "package", name, redirect)


@router.get("/v1/jobs/{key}/thumbnails/{name}", responses=_RANGE_RESPONSES, response_model=None)
async def thumbnails_file(
    request: Request,
    tenant: Tenant,
    key: str,
    name: str,
    redirect: Annotated[bool, Query(description="S3 storage: 307 to a presigned URL")] = True,
) -> Response:
    """A sprite sheet or the WebVTT index of the job's thumbnails, with the bearer token."""
    return await _authenticated(request, tenant, key, "thumbnails", name, redirect)


async def _authenticated(
    request: Request, tenant: TenantRef, key: str, part: str, name: str, redirect: bool
) -> Response:
    job = await deps.state(request).service.get(tenant, checked_key(key))
    return await serve(request, published(job, part), name, headers={}, redirect=redirect)


async def serve(
    request: Request, part: dict[str, Any], name: str, *, headers: dict[str, str], redirect: bool
) -> Response:
    """One file named in `part["files"]`, from storage by its digest."""
    st = deps.state(request)
    entry = part["files"].get(name) if FILE_NAME.match(name) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
        raise JobNotFound(f"there is no file {name[:100]!r} here")
    digest = entry["digest"]
    media = media_type_for(name)
    gone = JobNotFound(f"{name} is no longer stored")
    if redirect and st.blobs.local_path(digest) is None and not name.endswith(_MANIFESTS):
        url = await st.blobs.presign_get(
            digest, expires=st.settings.download_url_seconds, filename=name, media_type=media
        )
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=headers)
    start, end, partial = _parse_range(request.headers.get("range"))
    try:
        chunk = await st.blobs.read_range(digest, start, end)
    except BlobMissing:
        raise gone from None
    out = {
        **headers,
        "Accept-Ranges": "bytes",
        "Content-Length": str(chunk.end - chunk.start + 1),
    }
    if partial:
        out["Content-Range"] = f"bytes {chunk.start}-{chunk.end}/{chunk.total}"
    return StreamingResponse(
        chunk.chunks, status_code=206 if partial else 200, media_type=media, headers=out
    )
