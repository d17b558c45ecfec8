"""The HTTP API (FastAPI). `create_app` builds it around an `ApiState`."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from jobs.api import (
    batch,
    errors,
    playback,
    routes,
    sources,
    streams,
    tasks,
    uploads,
    usage,
    webhooks,
)
from jobs.api.deps import ApiState, Probe
from jobs.api.hardening import BodyReadTimeout, HeadWithoutBody
from jobs.api.limits import BodyLimit
from jobs.tracecontext import instrument_app

__all__ = ["ApiState", "Probe", "create_app"]

SUBMISSIONS = Counter(
    "vidjobs_submissions_total",
    "POST /v1/jobs answers: created (new or re-run), duplicate (answered with the existing "
    "job), rejected (409 on_duplicate=reject) or error",
    ["result"],
)


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="vidjobs",
        version="0.1.0",
        description="Video edit jobs with idempotent job keys.",
    )
    app.state.vidjobs = state
    errors.install(app)
    app.include_router(batch.router)
    app.include_router(routes.router)
    app.include_router(sources.router)
    app.include_router(tasks.router)
    app.include_router(uploads.router)
    app.include_router(usage.router)
    app.include_router(webhooks.router)
    app.include_router(streams.router)
    app.include_router(playback.router)

    if state.settings.api_metrics:
        metrics_token = state.settings.metrics_token

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(request: Request) -> Response:
            """Prometheus metrics of this process (behind VIDJOBS_METRICS_TOKEN when set)."""
            if metrics_token is not None:
                given = request.headers.get("authorization", "").removeprefix("Bearer ")
                if not hmac.compare_digest(given.encode(), metrics_token.encode()):
                    return JSONResponse(
                        errors.error_body("unauthorized", "metrics need the metrics token"),
                        status_code=401, headers={"WWW-Authenticate": "Bearer"},
                    )
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

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
        overrides={
            "/v1/sources": state.max_upload_bytes,
            "/v1/uploads/": state.settings.upload_max_bytes,
        },
    )
    app.add_middleware(SubmissionMetrics)
    app.add_middleware(BodyReadTimeout, seconds=state.settings.http_body_read_timeout_seconds)
    app.add_middleware(HeadWithoutBody)
    instrument_app(app)  # server spans when tracing is on (OTEL_*, vidjobs[otel])
    return app


class SubmissionMetrics:
    """Counts POST /v1/jobs answers by what they were (from the status and replay header)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/jobs":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                SUBMISSIONS.labels(_submission_result(message)).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def _submission_result(start: dict[str, Any]) -> str:
    status = int(start["status"])
    replayed = (b"idempotent-replayed", b"true") in [
        (k.lower(), v) for k, v in start.get("headers", [])
    ]
    if status == 201:
        return "created"
    if status == 200 and replayed:
        return "duplicate"
    if status == 409:
        return "rejected"
    return "error"
