"""POST /v1/jobs/batch: up to 1,000 edits in one request, answered item by item, in order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import JSONResponse

from jobs import batch
from jobs.api import deps
from jobs.api.errors import describe
from jobs.api.views import job_view
from jobs.service import OnDuplicate
from jobs.tenants import TenantRef

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]
_ERROR = {"description": "error", "content": {"application/json": {}}}


@router.post("/batch", responses={401: _ERROR, 413: _ERROR, 422: _ERROR, 503: _ERROR})
async def submit_batch(
    request: Request,
    tenant: Tenant,
    jobs: Annotated[list[Any], Body(embed=True)],
    on_duplicate: OnDuplicate = OnDuplicate.RETURN_EXISTING,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Submit edits in order. `results[i]` answers `jobs[i]`: `{"status": 201|200, "job"}`
    or `{"status": 409|422|..., "error"}`; one invalid item fails only itself."""
    st = deps.state(request)
    items = batch.check_items(jobs)
    digest = batch.request_hash(items, on_duplicate)
    if idempotency_key is not None:
        stored = await batch.stored_answer(st.service, tenant, idempotency_key, digest)
        if stored is not None:
            return JSONResponse(stored, headers={"Idempotent-Replayed": "true"})
    results = await batch.submit_items(
        st.service, tenant, items, on_duplicate=on_duplicate, describe=describe
    )
    answer = {"results": [_result(r) for r in results]}
    if idempotency_key is not None:
        answer = await batch.store_answer(st.service, tenant, idempotency_key, digest, answer)
    return JSONResponse(answer, headers={"Idempotent-Replayed": "false"})


def _result(r: batch.ItemResult) -> dict[str, Any]:
    if r.job is not None:
        return {"status": r.status, "job": job_view(r.job)}
    return {"status": r.status, "error": r.error}
