"""The HTTP API (FastAPI). `create_app` builds it around an `ApiState`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from jobs.api import errors, routes, sources
from jobs.api.deps import ApiState, Probe
from jobs.api.limits import BodyLimit

__all__ = ["ApiState", "Probe", "create_app"]


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="vidjobs",
        version="0.1.0",
        description="Video edit jobs with idempotent job keys.",
    )
    app.state.vidjobs = state
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(sources.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "database unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database answers."""
        try:
            await state.db.ping()
        except Exception:
            return JSONResponse(
                errors.error_body("unavailable", "the database is unreachable"),
                status_code=503,
                headers={"Retry-After": "2"},
            )
        return JSONResponse({"status": "ready", "database": state.db.dialect})

    app.add_middleware(
        BodyLimit,
        max_bytes=state.settings.max_body_bytes,
        overrides={"/v1/sources": state.max_upload_bytes},
    )
    return app
