"""/v1/jobs: submit, look up, list, cancel, retry, events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from jobs.api import deps, streams
from jobs.api.views import event_view, job_view
from jobs.errors import JobNotFound
from jobs.keys import is_job_key
from jobs.service import OnDuplicate
from jobs.spec import EditRequest
from jobs.status import JobStatus
from jobs.tenants import TenantRef

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]

_ERROR = {"description": "error", "content": {"application/json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _ERROR,
    404: _ERROR,
    409: _ERROR,
    413: _ERROR,
    422: _ERROR,
    503: _ERROR,
}


def checked_key(key: str) -> str:
    if not is_job_key(key):
        raise JobNotFound(f"no job with key {key[:100]!r}")
    return key


@router.post("", status_code=201, responses={200: {"description": "duplicate"}, **ERRORS})
async def submit_job(
    request: Request,
    tenant: Tenant,
    edit: Annotated[EditRequest, Body()],
    on_duplicate: OnDuplicate = OnDuplicate.RETURN_EXISTING,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Submit an edit. 201: a new job, or a failed/cancelled key run again. 200: existing job."""
    st = deps.state(request)
    result = await st.service.submit(
        tenant, edit, on_duplicate=on_duplicate, idempotency_key=idempotency_key
    )
    headers = {
        "Location": f"/v1/jobs/{result.job.key}",
        "Idempotent-Replayed": "true" if result.replayed else "false",
    }
    return JSONResponse(
        job_view(result.job), status_code=200 if result.replayed else 201, headers=headers
    )


@router.get("/{key}", responses=ERRORS)
async def get_job(request: Request, tenant: Tenant, key: str) -> dict[str, Any]:
    job, tasks = await deps.state(request).service.tasks(tenant, checked_key(key))
    return job_view(job, tasks if job.role == "graph" else None)


@router.get("", responses=ERRORS)
async def list_jobs(
    request: Request,
    tenant: Tenant,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    page = await deps.state(request).service.list_jobs(
        tenant, status=status, limit=limit, cursor=cursor
    )
    return {"jobs": [job_view(j) for j in page.jobs], "next_cursor": page.next_cursor}


# HEAD answers what GET would, without the body (the schema lists the GETs only).
router.add_api_route("/{key}", get_job, methods=["HEAD"], include_in_schema=False)
router.add_api_route("", list_jobs, methods=["HEAD"], include_in_schema=False)


@router.post("/{key}/cancel", responses=ERRORS)
async def cancel_job(request: Request, tenant: Tenant, key: str) -> dict[str, Any]:
    return job_view(await deps.state(request).service.cancel(tenant, checked_key(key)))


@router.post("/{key}/retry", responses=ERRORS)
async def retry_job(request: Request, tenant: Tenant, key: str) -> dict[str, Any]:
    return job_view(await deps.state(request).service.retry(tenant, checked_key(key)))


@router.get("/{key}/events", responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}})
async def job_events(
    request: Request,
    tenant: Tenant,
    key: str,
    follow: bool = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> Any:
    """The job's events in order; with `follow=true` a live Server-Sent Events stream."""
    if follow:
        job = await deps.state(request).service.get(tenant, checked_key(key))
        return streams.job_stream_response(request, job, last_event_id)
    events = await deps.state(request).service.events(tenant, checked_key(key))
    return {"key": key, "events": [event_view(e) for e in events]}
