"""One webhook POST through the SSRF guard: checked address, no redirects, capped body.

The host is resolved and checked once (`jobs.urlguard.resolve`); the request then goes to
that address with the host name in the Host header and as the TLS server name (SNI and
certificate check), so no second DNS lookup can send it elsewhere. Proxies from the
environment are ignored, redirects are never followed (a 3xx is a failed attempt), the
response body is read up to a cap and dropped, and the whole attempt has one deadline.

Every attempt has its own connection, closed after it: no pool is shared between attempts.
httpcore's pool can lose a slot for good when a request times out or is cancelled while the
pool is busy (encode/httpcore#1093); a shared pool of timed-out attempts stalled every later
delivery in the soak run. Only the TLS context (the expensive part) is shared.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ssl
import time
from dataclasses import dataclass

import httpx

from jobs import urlguard

MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    retry_after: float | None
    duration_ms: int
    body_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _one_connection() -> httpx.AsyncClient:
    one = httpx.Limits(max_connections=1, max_keepalive_connections=0)
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(verify=_tls(), limits=one, trust_env=False),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: we connect where we checked
        headers={"User-Agent": "vidjobs-webhooks/1"},
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), bounded to a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


async def post(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    policy: urlguard.Policy,
    time_limit: float,
    max_body_bytes: int,
    resolver: urlguard.Resolver | None = None,
) -> Outcome:
    """POST `body` to `url`; never raises for network trouble (it is the attempt's outcome)."""
    started = time.monotonic()

    def done(
        code: int | None, error: str | None, retry_after: float | None = None, n: int = 0
    ) -> Outcome:
        ms = int((time.monotonic() - started) * 1000)
        return Outcome(code, error, retry_after, ms, n)

    try:
        async with _one_connection() as client, asyncio.timeout(time_limit):
            target = await urlguard.resolve(url, policy, resolver)
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = client.build_request(
                "POST",
                target.connect_url,
                content=body,
                headers={**headers, "Host": target.host_header},
                extensions={**extensions, "timeout": httpx.Timeout(time_limit).as_dict()},
            )
            response = await client.send(request, stream=True)
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= max_body_bytes:
                        break  # the rest is never read
            finally:
                await response.aclose()
            retry_after = None
            if response.status_code in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
            return done(response.status_code, error, retry_after, read)
    except urlguard.URLNotAllowed as exc:
        return done(None, f"refused by the SSRF guard: {exc.message}")
    except (TimeoutError, httpx.TimeoutException):
        return done(None, f"timed out after {time_limit:g} s")
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
    except OSError as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:500])
