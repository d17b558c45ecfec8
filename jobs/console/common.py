"""What every console route shares: templates, the viewer, and whose job a URL names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from jobs.api import deps
from jobs.console import auth, queries
from jobs.keys import is_job_key
from jobs.tenants import TenantRef

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
# Pages are HTML the console's own script enhances; nothing else may run or frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "connect-src 'self'; worker-src 'self' blob:; "  # hls.js: fetches, MSE, its worker
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: Any) -> str:
    """A timestamp as the pages show it (UTC, to the second)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return str(value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"))


templates.env.filters["when"] = when


def page(
    request: Request, name: str, viewer: auth.Viewer | None, status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context = {"viewer": viewer, **context}
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def not_found(request: Request, viewer: auth.Viewer | None, what: str) -> HTMLResponse:
    return page(request, "message.html", viewer, 404, title="Not found", message=what)


async def current(request: Request) -> auth.Viewer | None:
    return await auth.viewer(request, deps.state(request).db)


def to_login() -> Response:
    return RedirectResponse("/console/login", status_code=303)


async def job_tenant(
    viewer: auth.Viewer, request: Request, tenant_id: str, key: str
) -> TenantRef | None:
    """The tenant whose job a console URL names, if this viewer may see it. A tenant sees
    only itself; another tenant's id is answered like an unknown one."""
    if not is_job_key(key):
        return None
    if viewer.tenant is not None:
        return viewer.tenant if tenant_id == viewer.tenant.id else None
    if len(tenant_id) > 36 or not tenant_id.replace("-", "").isalnum():
        return None
    async with deps.state(request).db.reader.connect() as conn:
        return await queries.tenant_by_id(conn, tenant_id)
