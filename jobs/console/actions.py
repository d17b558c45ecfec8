"""The console's actions and live feeds. Every action goes through `JobService`, the calls
the API makes (`POST /v1/jobs/{key}/cancel|retry`), so fencing, the reuse policy and the
tenant rules are the same. Actions need the session's CSRF token (a form field or the
`X-CSRF-Token` header); a cross-site form post is refused by the SameSite cookie too."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from jobs.api import deps, streams
from jobs.api.sources import output_response
from jobs.api.views import job_view
from jobs.console import auth, media, queries
from jobs.console.common import current, job_tenant, not_found, page, to_login
from jobs.errors import JobNotFound, VidjobsError
from jobs.models import Job
from jobs.service import JobService
from jobs.tenants import TenantRef

router = APIRouter(prefix="/console", include_in_schema=False)
BULK_MAX = 1000  # jobs one bulk action changes at most (the confirmation says so)
ACTIONS = ("cancel", "retry")


def _refused(message: str, status: int = 403) -> JSONResponse:
    return JSONResponse({"error": {"code": "forbidden", "message": message, "details": None}},
                        status_code=status)


async def _act(service: JobService, tenant: TenantRef, key: str, action: str) -> Any:
    if action == "cancel":
        return await service.cancel(tenant, key)
    return await service.retry(tenant, key)


@router.post("/jobs/{tenant_id}/{key}/{action}")
async def job_action(
    request: Request, tenant_id: str, key: str, action: str,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Cancel or retry one job. A script gets the job as JSON; a plain form post is sent
    back to the job page."""
    viewer = await current(request)
    if viewer is None:
        return _refused("sign in first", 401)
    if not auth.csrf_ok(viewer, request.headers.get("x-csrf-token") or csrf):
        return _refused("this action needs the page's CSRF token: reload the page")
    tenant = await job_tenant(viewer, request, tenant_id, key)
    if action not in ACTIONS or tenant is None:
        return JSONResponse({"error": {"code": "not_found", "message": "no such job or action",
                                       "details": None}}, status_code=404)
    job = await _act(deps.state(request).service, tenant, key, action)  # errors: JSON 4xx
    if "x-csrf-token" in request.headers:
        return JSONResponse(job_view(job))
    return RedirectResponse(f"/console/jobs/{tenant_id}/{key}", status_code=303)


@router.post("/jobs/bulk")
async def bulk(request: Request) -> Response:
    """Cancel or retry the selected jobs, or every job matching the filter (up to BULK_MAX).
    Without `confirmed` the answer is a confirmation page that shows the count."""
    viewer = await current(request)
    if viewer is None:
        return to_login()
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not auth.csrf_ok(viewer, fields.get("csrf")):
        return _refused("this action needs the page's CSRF token: reload the page")
    action, scope = fields.get("action", ""), fields.get("scope", "selected")
    if "op" in fields:  # the jobs page's buttons: "retry:selected", "cancel:matching", ...
        action, _, scope = fields["op"].partition(":")
    if action not in ACTIONS or scope not in ("selected", "matching"):
        return page(request, "message.html", viewer, 400, title="Bulk action",
                    message="Choose cancel or retry, for the selected or all matching jobs.")
    f = queries.parse_filter(fields, operator=viewer.is_operator)
    st = deps.state(request)
    async with st.db.reader.connect() as conn:
        if scope == "matching":
            targets = await queries.select_matching_keys(conn, viewer.tenant, f, BULK_MAX)
        else:
            targets = _selected(form.getlist("job"), viewer)[:BULK_MAX]
    if fields.get("confirmed") != "yes":
        return page(request, "confirm.html", viewer, title="Confirm", action=action,
                    scope=scope, count=len(targets), capped=len(targets) >= BULK_MAX,
                    filter=f, selected=[f"{t}/{k}" for t, k in targets], limit=BULK_MAX)
    done, skipped = 0, []
    tenants: dict[str, TenantRef | None] = {}
    for tenant_id, key in targets:
        if tenant_id not in tenants:
            tenants[tenant_id] = await job_tenant(viewer, request, tenant_id, key)
        tenant = tenants[tenant_id]
        try:
            if tenant is None:
                raise JobNotFound("no such job")
            await _act(st.service, tenant, key, action)
            done += 1
        except VidjobsError as exc:
            skipped.append({"key": key, "why": exc.message})
    return page(request, "bulk_done.html", viewer, title="Done", action=action, done=done,
                skipped=skipped, back=f"/console/jobs?{f.query()}")


def _selected(values: list[Any], viewer: auth.Viewer) -> list[tuple[str, str]]:
    """`tenant/key` form values; a tenant's session acts only on its own."""
    out = []
    for value in values:
        if isinstance(value, str):
            tenant_id, _, key = value.partition("/")
            if viewer.tenant is None or tenant_id == viewer.tenant.id:
                out.append((tenant_id, key))
    return list(dict.fromkeys(out))


@router.get("/jobs/live")
async def live(request: Request, ids: Annotated[str, Query(max_length=2000)] = "") -> Response:
    """Status and progress of the jobs on the page (polled by the jobs page's script)."""
    viewer = await current(request)
    if viewer is None:
        return _refused("sign in first", 401)
    wanted = [int(i) for i in ids.split(",") if i.isdigit() and len(i) < 19][:200]
    async with deps.state(request).db.reader.connect() as conn:
        rows = await queries.select_live(conn, viewer.tenant, wanted)
    return JSONResponse({"jobs": [{**r, "progress": round(r["progress"], 4)} for r in rows]})


async def _visible_job(request: Request, tenant_id: str, key: str) -> Job | Response:
    """The job a console URL names if the signed-in viewer may see it, else the refusal."""
    viewer = await current(request)
    if viewer is None:
        return _refused("sign in first", 401)
    tenant = await job_tenant(viewer, request, tenant_id, key)
    if tenant is None:
        return not_found(request, viewer, "no such job")
    return await deps.state(request).service.get(tenant, key)


@router.get("/jobs/{tenant_id}/{key}/stream")
async def job_stream(request: Request, tenant_id: str, key: str) -> Response:
    """The job's events and progress as Server-Sent Events (the API's `follow=true` stream,
    with the session instead of a bearer token: EventSource cannot send headers)."""
    found = await _visible_job(request, tenant_id, key)
    if isinstance(found, Response):
        return found
    return streams.job_stream_response(request, found, request.headers.get("last-event-id"))


@router.get("/jobs/{tenant_id}/{key}/tasks")
async def job_tasks(request: Request, tenant_id: str, key: str) -> Response:
    """The job's and its tasks' status and progress (polled by the job page's tasks graph)."""
    viewer = await current(request)
    if viewer is None:
        return _refused("sign in first", 401)
    tenant = await job_tenant(viewer, request, tenant_id, key)
    if tenant is None:
        return JSONResponse({"error": {"code": "not_found", "message": "no such job",
                                       "details": None}}, status_code=404)
    job, members = await deps.state(request).service.tasks(tenant, key)
    return JSONResponse(media.live_tasks(job, members))


@router.get("/jobs/{tenant_id}/{key}/output")
async def job_output(request: Request, tenant_id: str, key: str) -> Response:
    """The job's file (Range requests honoured, for the video player), as the API serves it."""
    found = await _visible_job(request, tenant_id, key)
    if isinstance(found, Response):
        return found
    return await output_response(request, deps.state(request), found, redirect=True)


@router.post("/logout")
async def logout(request: Request) -> Response:
    viewer = await current(request)
    form = await request.form()
    sent = form.get("csrf")
    if viewer is not None and auth.csrf_ok(viewer, sent if isinstance(sent, str) else None):
        await auth.sign_out(request, deps.state(request).db)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/console")
    return response
