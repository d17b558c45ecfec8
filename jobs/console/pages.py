"""The console's pages: sign-in, jobs, one job, the fleet (GET; server-rendered)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from jobs.api import deps
from jobs.api.views import event_view, job_view
from jobs.console import auth, fleet, media, queries
from jobs.console.common import current, job_tenant, not_found, page, to_login
from jobs.console.timeline import attempts_of, preview_of
from jobs.errors import JobNotFound
from jobs.status import JobStatus

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home(request: Request) -> Response:
    return RedirectResponse("/console/jobs", status_code=303)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(request, "login.html", None, title="Sign in")


@router.post("/login")
async def login(request: Request, token: str = Form("", max_length=300)) -> Response:
    """A tenant or operator token starts a session (an HttpOnly, SameSite=Strict cookie)."""
    if not auth.same_origin(request):
        return page(request, "login.html", None, 403, title="Sign in",
                    error="sign in from this console's own page")
    signed = await auth.sign_in(deps.state(request).db, token)
    if signed is None:
        return page(request, "login.html", None, 401, title="Sign in",
                    error="that token is not a live tenant or operator token")
    cookie, _ = signed
    response = RedirectResponse("/console/jobs", status_code=303)
    response.set_cookie(
        auth.COOKIE, cookie, max_age=auth.SESSION_HOURS * 3600, path="/console",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


@router.get("/jobs")
async def jobs_page(request: Request) -> Response:
    viewer = await current(request)
    if viewer is None:
        return to_login()
    f = queries.parse_filter(request.query_params, operator=viewer.is_operator)
    db = deps.state(request).db
    async with db.reader.connect() as conn:
        rows, next_before = await queries.select_page(conn, viewer.tenant, f)
        names = await queries.tenant_names(conn) if viewer.is_operator else {}
    return page(
        request, "jobs.html", viewer, title="Jobs", jobs=rows, filter=f,
        statuses=[s.value for s in JobStatus], tenants=names,
        next_page=None if next_before is None else f.query(before=next_before),
        first_page=f.query() if f.before is not None else None,
    )


@router.get("/jobs/{tenant_id}/{key}")
async def job_page(request: Request, tenant_id: str, key: str) -> Response:
    viewer = await current(request)
    if viewer is None:
        return to_login()
    tenant = await job_tenant(viewer, request, tenant_id, key)
    service = deps.state(request).service
    try:
        if tenant is None:
            raise JobNotFound("no such job")
        job, members = await service.tasks(tenant, key)
        events = [event_view(e) for e in await service.events(tenant, key)]
    except JobNotFound:
        return not_found(request, viewer, "There is no job with this key that you can see.")
    view: dict[str, Any] = job_view(job, members)
    base = f"/console/jobs/{tenant_id}/{key}"
    settings = deps.state(request).settings
    return page(
        request, "job.html", viewer, title=f"Job {key[:16]}…", job=view, tenant=tenant,
        events=events, attempts=attempts_of(events), preview=preview_of(view, base), base=base,
        tasks=media.tasks_of(members),
        playback=media.playback_of(settings, tenant, job, str(request.base_url)),
    )


@router.get("/fleet")
async def fleet_page(request: Request) -> Response:
    viewer = await current(request)
    if viewer is None:
        return to_login()
    if not viewer.is_operator:
        return page(request, "message.html", viewer, 403, title="Operators only",
                    message="The fleet page is for operators: sign in with an operator token.")
    async with deps.state(request).db.reader.connect() as conn:
        data = await fleet.read_fleet(conn)
    peak = max([m.succeeded + m.failed for m in data.minutes] + [1])
    return page(request, "fleet.html", viewer, title="Fleet", fleet=data, peak=peak)
