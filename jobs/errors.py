"""A small exception tree. Each error says what was wrong and what to do about it.

The API maps these to HTTP answers (`jobs.api.errors`); workers map executor errors to
retry decisions (`RetryableError` carries its own delay, like dramatiq's `Retry`).
"""

from __future__ import annotations

from typing import Any


class VidjobsError(Exception):
    """Base of every error vidjobs raises on purpose."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(VidjobsError):
    """The request is malformed: `details` lists each problem with its JSON path."""

    code = "invalid_request"
    http_status = 422


class SourceNotFound(InvalidRequest):
    code = "source_not_found"


class Unauthorized(VidjobsError):
    code = "unauthorized"
    http_status = 401


class JobNotFound(VidjobsError):
    """No such job for this tenant (another tenant's job looks exactly the same)."""

    code = "not_found"
    http_status = 404


class OutputExpired(VidjobsError):
    """The job succeeded, but retention deleted its output file; submit it again to re-run."""

    code = "output_expired"
    http_status = 410


class UploadNotFound(VidjobsError):
    """No open upload with this id for this tenant (never made, another's, or expired)."""

    code = "not_found"
    http_status = 404


class UploadIncomplete(VidjobsError):
    """The upload's bytes have not (all) arrived in storage yet."""

    code = "upload_incomplete"
    http_status = 409


class DuplicateJob(VidjobsError):
    """The key is in flight or done and the client asked to be told (`on_duplicate=reject`)."""

    code = "duplicate"
    http_status = 409


class InvalidTransition(VidjobsError):
    """The job is not in a state that allows this action (e.g. retrying a succeeded job)."""

    code = "invalid_state"
    http_status = 409


class IdempotencyKeyReused(VidjobsError):
    """An `Idempotency-Key` header was reused with a different request body."""

    code = "idempotency_key_reused"
    http_status = 422


class PayloadTooLarge(VidjobsError):
    code = "payload_too_large"
    http_status = 413


class RangeNotSatisfiable(VidjobsError):
    """A Range header that asks for bytes the file does not have."""

    code = "range_not_satisfiable"
    http_status = 416


class Unavailable(VidjobsError):
    """A dependency (the database) is down; the client should retry after a delay."""

    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 2, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class TooManyRequests(VidjobsError):
    """A tenant is over its request rate or its cap on jobs in flight; retry after a delay."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str, *, retry_after: int = 1, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class LostFence(VidjobsError):
    """A fenced statement matched no row: this worker no longer holds the job."""

    code = "lost_fence"
    http_status = 409


class ExecutionError(VidjobsError):
    """Raised by executors. `retryable` decides between backoff and giving up."""

    code = "execution_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message, details=details)
        if code is not None:
            self.code = code


class PermanentError(ExecutionError):
    """The input cannot ever succeed (corrupt file, unsupported stream): no retry."""

    code = "permanent"
    retryable = False


class RetryableError(ExecutionError):
    """A transient failure (timeout, kill, I/O): retry after `delay` seconds or the backoff."""

    code = "retryable"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        delay: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.delay = delay


class SourceChanged(PermanentError):
    """The bytes a worker was about to read are not the ones the job's key names."""

    code = "source_changed"


class BlobMissing(PermanentError):
    """A digest the job names is not in storage (deleted, expired or never stored)."""

    code = "blob_missing"
