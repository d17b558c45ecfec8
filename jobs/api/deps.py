"""What routes depend on: the app's state and the caller's tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from jobs.api.ratelimit import RateLimiter
from jobs.db import Database
from jobs.errors import Unauthorized
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import Storage
from jobs.tenants import TenantRef, tenant_for_token

# Probes an uploaded file; raises PermanentError for a file that is not an acceptable video.
Probe = Callable[[Path], dict[str, Any]]


@dataclass
class ApiState:
    db: Database
    service: JobService
    settings: Settings
    blobs: Storage
    probe: Probe | None = None
    max_upload_bytes: int = 2 * 1024**3
    limiter: RateLimiter | None = field(default=None)

    def __post_init__(self) -> None:
        if self.limiter is None:
            s = self.settings
            self.limiter = RateLimiter(s.rate_limit_per_second, s.rate_limit_burst)


def state(request: Request) -> ApiState:
    value = request.app.state.vidjobs
    assert isinstance(value, ApiState)
    return value


async def tenant(request: Request) -> TenantRef:
    """The tenant of the bearer token. Missing, malformed and unknown tokens look alike."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200 or not token.isascii():
        raise Unauthorized("a valid bearer token is required")
    st = state(request)
    async with st.db.reader.connect() as conn:
        found = await tenant_for_token(conn, token)
    if found is None:
        raise Unauthorized("a valid bearer token is required")
    assert st.limiter is not None
    st.limiter.check(found.id)
    return found
