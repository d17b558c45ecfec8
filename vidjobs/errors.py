"""The client's exceptions: one per family of the server's error codes.

Every error the server answers is ``{"error": {"code", "message", "details"}}``; the
exception carries those three and the HTTP status, so callers branch on the class and
show the message as the server wrote it.
"""

from __future__ import annotations

from typing import Any


class VidjobsError(Exception):
    """Any error answered by a vidjobs server (or the failure to reach one)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "error",
        details: Any = None, retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


class TransportError(VidjobsError):
    """The server could not be reached, or the connection broke (after the retries)."""


class InvalidRequest(VidjobsError):
    """422: the edit, a parameter or a header is invalid; `details` names the JSON paths."""


class AuthenticationError(VidjobsError):
    """401: the token is missing, malformed, unknown or revoked."""


class NotFound(VidjobsError):
    """404: no such job (or it belongs to another tenant), or no such output."""


class Conflict(VidjobsError):
    """409: a duplicate refused with ``on_duplicate="reject"``, or an invalid state change."""


class Gone(VidjobsError):
    """410: the resource existed but is gone for good (an expired output)."""


class PayloadTooLarge(VidjobsError):
    """413: the body or upload is over the server's limit."""


class RateLimited(VidjobsError):
    """429: too many requests or too many jobs in flight; `retry_after` says when to retry."""


class Unavailable(VidjobsError):
    """503: the server's database is down or the server is starting; retry later."""


class ServerError(VidjobsError):
    """Any other 5xx, which a vidjobs server never means to answer: report it."""


_BY_STATUS: dict[int, type[VidjobsError]] = {
    401: AuthenticationError,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: InvalidRequest,
    400: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def from_response(status: int, body: Any, retry_after: float | None) -> VidjobsError:
    """The exception for an error answer (its body as decoded, or text when not JSON)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {"message": str(body)[:500] or f"HTTP {status}"}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else VidjobsError)
    return cls(
        str(err.get("message") or f"HTTP {status}"),
        status=status,
        code=str(err.get("code") or "error"),
        details=err.get("details"),
        retry_after=retry_after,
    )
