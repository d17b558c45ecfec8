"""/v1/jobs/{key}/tasks (a job's tasks) and /v1/jobs/{key}/outputs/{name} (one named output)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from jobs.api import deps
from jobs.api.routes import ERRORS, checked_key
from jobs.api.sources import serve_output
from jobs.errors import JobNotFound, OutputExpired
from jobs.tasks import views
from jobs.tasks.graph import Member
from jobs.tenants import TenantRef

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]


@router.get("/{key}/tasks", responses=ERRORS)
async def job_tasks(request: Request, tenant: Tenant, key: str) -> dict[str, Any]:
    """The job's tasks. A simple job is its own one task, named "main"."""
    job, tasks = await deps.state(request).service.tasks(tenant, checked_key(key))
    if job.role != "graph":
        tasks = [Member("main", str(job.spec.get("kind") or "edit"), [], None, False, job)]
    return {"tasks": [views.task_view(m) for m in tasks]}


@router.get(
    "/{key}/outputs/{name}",
    responses={**ERRORS, 206: {"description": "a byte range"}, 307: {"description": "redirect"}},
    response_model=None,
)
async def named_output(
    request: Request,
    tenant: Tenant,
    key: str,
    name: str,
    redirect: Annotated[bool, Query(description="S3 storage: 307 to a presigned URL")] = True,
) -> FileResponse | RedirectResponse | StreamingResponse:
    """One of a succeeded job's named `outputs` (Range and redirects as `/output`)."""
    st = deps.state(request)
    job = await st.service.get(tenant, checked_key(key))
    if job.status != "succeeded" or not job.output:
        raise JobNotFound(f"job {key} has no outputs (it is {job.status})")
    if job.output.get("expired"):
        raise OutputExpired(
            f"the outputs of job {key} expired and were deleted; submit the same edit again "
            "to run it again (same key)",
            details={"key": key},
        )
    outputs = job.output.get("outputs") or {}
    if name not in outputs or not isinstance(outputs[name], dict):
        raise JobNotFound(
            f"job {key} has no output named {name[:64]!r}",
            details={"outputs": sorted(outputs)},
        )
    return await serve_output(request, st, key, outputs[name], f"{key}-{name}", redirect)
