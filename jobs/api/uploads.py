"""/v1/uploads: direct uploads, the bytes sent straight to storage.

`POST /v1/uploads` answers where to send the bytes: a presigned PUT (or one presigned PUT
per part for large files) on S3 storage, this API's own `PUT /v1/uploads/{id}` on local
storage. `POST /v1/uploads/{id}/complete` then reads the object back, checks its size,
hashes and probes it, stores it by digest and answers like `POST /v1/sources`.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from jobs import uploads
from jobs.api import deps
from jobs.api.routes import ERRORS
from jobs.api.sources import adopt
from jobs.errors import (
    BlobMissing,
    InvalidRequest,
    PayloadTooLarge,
    UploadIncomplete,
    UploadNotFound,
)
from jobs.models import Blob, Upload
from jobs.storage import file_sha256
from jobs.tenants import TenantRef

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]
blobs_table = Blob.__table__  # type: ignore[attr-defined]


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, description="the file's exact size in bytes")
    media_type: str = Field(
        default="application/octet-stream",
        pattern=r"^[a-z]+/[a-z0-9.+-]{1,60}$",
        description="its content type, e.g. video/mp4",
    )


def _checked_id(upload_id: str) -> str:
    if len(upload_id) != 32 or not all(ch in "0123456789abcdef" for ch in upload_id):
        raise UploadNotFound(f"no upload with id {upload_id[:40]!r}")
    return upload_id


async def _open_upload(st: deps.ApiState, tenant: TenantRef, upload_id: str) -> Upload:
    async with st.db.reader.connect() as conn:
        row = await uploads.select_open_upload(conn, tenant.id, _checked_id(upload_id))
    if row is None:
        raise UploadNotFound(f"no upload with id {upload_id!r} (or it expired)")
    return row


@router.post("", status_code=201, responses=ERRORS)
async def create_upload(request: Request, tenant: Tenant, body: UploadRequest) -> JSONResponse:
    """Where to send a file's bytes: {upload_id, url, method, headers, expires_at, parts}."""
    st = deps.state(request)
    limit = st.settings.upload_max_bytes
    if body.size > limit:
        raise PayloadTooLarge(
            f"the upload is larger than the limit of {limit} bytes",
            details={"limit_bytes": limit, "size": body.size},
        )
    upload_id = uuid.uuid4().hex
    expires = st.settings.upload_url_seconds
    direct = await st.blobs.presign_upload(
        upload_id, size=body.size, media_type=body.media_type, expires=expires
    )
    async with st.db.transaction() as conn:
        row = await uploads.insert_upload(
            conn,
            upload_id=upload_id,
            tenant_id=tenant.id,
            size=body.size,
            media_type=body.media_type,
            multipart_id=direct.multipart_id if direct else None,
            expires_in=expires,
        )
    answer: dict[str, Any] = {
        "upload_id": upload_id,
        "method": "PUT",
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }
    if direct is None:  # local storage: through this API, with the caller's bearer token
        answer |= {
            "url": str(request.url_for("send_upload", upload_id=upload_id)),
            "headers": {"Content-Type": body.media_type},
            "parts": [],
        }
    else:
        answer |= {"url": direct.url, "headers": direct.headers, "parts": direct.parts}
    return JSONResponse(answer, status_code=201)


@router.put("/{upload_id}", responses=ERRORS)
async def send_upload(request: Request, tenant: Tenant, upload_id: str) -> dict[str, Any]:
    """The upload's bytes, through the API (the URL local storage hands out)."""
    st = deps.state(request)
    row = await _open_upload(st, tenant, upload_id)
    if st.blobs.direct_uploads:
        raise InvalidRequest(
            "on this server uploads go straight to storage: PUT the bytes to the url (or the "
            "parts' urls) that POST /v1/uploads answered",
            details=[{"path": "upload_id", "message": "not through the API", "allowed": "url"}],
        )
    if row.completed_at is not None:
        raise InvalidRequest(
            "this upload is already completed",
            details=[{"path": "upload_id", "message": "completed", "allowed": "a new upload"}],
        )
    _, size, tmp = await st.blobs.receive(request.stream(), row.size)
    await st.blobs.stage(row.id, tmp)
    return {"upload_id": row.id, "size": size}


@router.post("/{upload_id}/complete", responses={**ERRORS, 200: {"description": "stored"}})
async def complete_upload(request: Request, tenant: Tenant, upload_id: str) -> JSONResponse:
    """Verify the uploaded object (size, digest, probe) and store it: {digest, size, probe}."""
    st = deps.state(request)
    row = await _open_upload(st, tenant, upload_id)
    if row.digest is not None:  # completed before: the same answer again
        async with st.db.reader.connect() as conn:
            blob = (
                await conn.execute(
                    blobs_table.select().where(blobs_table.c.digest == row.digest)
                )
            ).first()
        probe = blob.probe if blob is not None else None
        return JSONResponse({"digest": row.digest, "size": row.size, "probe": probe})
    scratch = st.blobs.temp_dir("upload-")
    try:
        tmp = scratch / "upload"
        try:
            size = await st.blobs.fetch_staged(row.id, tmp, row.multipart_id)
        except BlobMissing:
            raise UploadIncomplete(
                "no bytes have arrived for this upload yet: send them to its url first",
                details={"upload_id": row.id},
            ) from None
        if size != row.size:
            await st.blobs.delete_staged(row.id, None)
            raise InvalidRequest(
                f"the uploaded object has {size} bytes, the upload declared {row.size}",
                details=[
                    {"path": "size", "message": f"received {size}", "allowed": str(row.size)}
                ],
            )
        digest, _ = await asyncio.to_thread(file_sha256, tmp)
        body = await adopt(st, tenant, tmp, digest, size, row.media_type)
        async with st.db.transaction() as conn:
            await uploads.complete_upload_if_open(conn, row.id, digest)
        await st.blobs.delete_staged(row.id, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return JSONResponse(body)
