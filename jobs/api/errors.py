"""Every error the API returns is JSON: {"error": {"code", "message", "details"}}.

No malformed input reaches a 5xx: validation errors name the JSON path, what was wrong
and what is allowed; a database outage is a 503 with Retry-After.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from jobs.errors import TooManyRequests, Unavailable, VidjobsError
from jobs.specbase import SpecError

log = logging.getLogger("vidjobs.api")

_OP_TAGS = {
    "trim",
    "scale",
    "crop",
    "fps",
    "rotate",
    "flip",
    "speed",
    "mute",
    "volume",
    "thumbnail",
    "concat",
    "watermark",
    "deinterlace",
    "pad",
    "fade",
    "loudnorm",
    "subtitles",
}
_LOC_ROOTS = {"body", "query", "path", "header"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'operations', 1, 'scale', 'width') -> 'operations[1].width'."""
    parts = list(loc)
    prefix = ""
    if parts and parts[0] in _LOC_ROOTS:
        root = parts.pop(0)
        if root != "body":
            prefix = f"{root}:"
    out = ""
    prev: Any = None
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and part in _OP_TAGS:
            pass  # the discriminator tag pydantic inserts after a list index
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union")):
            pass
        else:
            out += f".{part}" if out else str(part)
        prev = part
    return prefix + (out or "$")


def _allowed(err: dict[str, Any]) -> Any:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return ctx["expected"]
    if "expected_tags" in ctx:
        return ctx["expected_tags"]
    bounds = {k: ctx[k] for k in ("ge", "gt", "le", "lt", "min_length", "max_length") if k in ctx}
    return bounds or None


def describe(errors: list[Any]) -> list[dict[str, Any]]:
    details = []
    for err in errors[:50]:
        message = str(err.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        path = json_path(err.get("loc", ()))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):  # a cross-field rule knows which field it is about
            path = cause.path if path == "$" else f"{path}.{cause.path}"
        item: dict[str, Any] = {"path": path, "message": message}
        allowed = _allowed(err)
        if allowed is not None:
            item["allowed"] = _jsonable(allowed)
        details.append(item)
    return details


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def install(app: FastAPI) -> None:
    @app.exception_handler(VidjobsError)
    async def _vidjobs(_: Request, exc: VidjobsError) -> JSONResponse:
        headers = {}
        if isinstance(exc, Unavailable | TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(exc.code, exc.message, _jsonable(exc.details)),
            status_code=exc.http_status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = describe(list(exc.errors()))
        bad_json = any(d["message"].startswith("JSON decode error") for d in details)
        message = "the body is not valid JSON" if bad_json else "the request is invalid"
        return JSONResponse(error_body("invalid_request", message, details), status_code=422)

    @app.exception_handler(ValidationError)
    async def _model_invalid(_: Request, exc: ValidationError) -> JSONResponse:
        details = describe(list(exc.errors()))
        return JSONResponse(error_body("invalid_request", "the request is invalid", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # The last resort (Starlette's own answer is text/plain): still the envelope. The
        # server logs the traceback as before.
        return JSONResponse(error_body("internal", "an internal error occurred"), 500)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # Nobody is left to answer; nothing was stored (an upload's temp file is removed).
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return JSONResponse(error_body("client_disconnected", "the client went away"), 400)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("unavailable", "the database is unavailable; retry shortly"),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated or is_transient(exc):
            return JSONResponse(
                error_body("unavailable", "the database is unavailable; retry shortly"),
                status_code=503,
                headers={"Retry-After": "2"},
            )
        log.error("database error", exc_info=exc)
        return JSONResponse(error_body("internal", "a database error occurred"), 500)


# SQLSTATE classes that say "the database is going away or busy", not "your query is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
# cannot connect now), 40001/40P01 serialization failure and deadlock (safe to retry).
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_STATES = ("40001", "40P01")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "retry later" (a 503), judged by its SQLSTATE."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and (
            state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
        ):
            return True
        if isinstance(seen, ConnectionError | TimeoutError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return False
