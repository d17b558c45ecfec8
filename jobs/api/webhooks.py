"""/v1/webhooks: endpoints, secret rotation, deliveries with their attempts, replay, ping."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from jobs.api import deps
from jobs.tenants import TenantRef
from jobs.webhooks.service import (
    EndpointCreate,
    EndpointPatch,
    RotateSecret,
    WebhookService,
)
from jobs.webhooks.views import delivery_view, endpoint_view

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Tenant = Annotated[TenantRef, Depends(deps.tenant)]
EndpointId = Annotated[str, Path(max_length=40)]
DeliveryId = Annotated[int, Path(ge=1, le=2**62)]

_ERROR = {"description": "error", "content": {"application/json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {401: _ERROR, 404: _ERROR, 422: _ERROR, 503: _ERROR}


def service(request: Request) -> WebhookService:
    """The app's webhook service (the composition root may set one with a wake-up hook)."""
    found = getattr(request.app.state, "webhooks", None)
    if not isinstance(found, WebhookService):
        st = deps.state(request)
        found = WebhookService(st.db, st.settings)
        request.app.state.webhooks = found
    return found


Service = Annotated[WebhookService, Depends(service)]


@router.post("", status_code=201, responses=ERRORS)
async def create_endpoint(
    tenant: Tenant, svc: Service, req: Annotated[EndpointCreate, Body()]
) -> JSONResponse:
    """A new endpoint; the answer holds its signing secret, shown only this once."""
    ep, secret = await svc.create(tenant, req)
    return JSONResponse(
        endpoint_view(ep, secret=secret),
        status_code=201,
        headers={"Location": f"/v1/webhooks/{ep.id}"},
    )


@router.get("", responses=ERRORS)
async def list_endpoints(tenant: Tenant, svc: Service) -> dict[str, Any]:
    return {"webhooks": [endpoint_view(ep) for ep in await svc.endpoints(tenant)]}


@router.get("/{endpoint_id}", responses=ERRORS)
async def get_endpoint(tenant: Tenant, svc: Service, endpoint_id: EndpointId) -> dict[str, Any]:
    return endpoint_view(await svc.get(tenant, endpoint_id))


@router.patch("/{endpoint_id}", responses=ERRORS)
async def patch_endpoint(
    tenant: Tenant, svc: Service, endpoint_id: EndpointId, req: Annotated[EndpointPatch, Body()]
) -> dict[str, Any]:
    """Change the URL, events, description, or enable a disabled endpoint again."""
    return endpoint_view(await svc.update(tenant, endpoint_id, req))


@router.delete("/{endpoint_id}", status_code=204, responses=ERRORS)
async def delete_endpoint(tenant: Tenant, svc: Service, endpoint_id: EndpointId) -> Response:
    """Delete the endpoint with its deliveries; nothing more is sent to it."""
    await svc.delete(tenant, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", responses=ERRORS)
async def rotate_secret(
    tenant: Tenant,
    svc: Service,
    endpoint_id: EndpointId,
    req: Annotated[RotateSecret | None, Body()] = None,
) -> dict[str, Any]:
    """A new secret (shown once); the old one also signs until `previous_secret_expires_at`."""
    ep, secret = await svc.rotate_secret(tenant, endpoint_id, req or RotateSecret())
    return endpoint_view(ep, secret=secret)


@router.get("/{endpoint_id}/deliveries", responses=ERRORS)
async def list_deliveries(
    tenant: Tenant,
    svc: Service,
    endpoint_id: EndpointId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    """Deliveries newest first, each with its attempts (time, status code, duration, error)."""
    rows, tries = await svc.deliveries(tenant, endpoint_id, limit=limit, before=before)
    more = len(rows) == limit and rows
    return {
        "deliveries": [delivery_view(r, tries.get(r.id or 0, [])) for r in rows],
        "next_before": rows[-1].id if more else None,
    }


@router.post("/{endpoint_id}/deliveries/{delivery_id}/replay", status_code=202, responses=ERRORS)
async def replay_delivery(
    tenant: Tenant, svc: Service, endpoint_id: EndpointId, delivery_id: DeliveryId
) -> dict[str, Any]:
    """Send the delivery's event again (same webhook-id and body) as a new delivery."""
    return delivery_view(await svc.replay(tenant, endpoint_id, delivery_id), [])


@router.post("/{endpoint_id}/test", status_code=202, responses=ERRORS)
async def test_endpoint(tenant: Tenant, svc: Service, endpoint_id: EndpointId) -> dict[str, Any]:
    """Queue a `webhook.test` event to this endpoint."""
    return delivery_view(await svc.ping(tenant, endpoint_id), [])
