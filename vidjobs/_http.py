"""What the sync and async clients share: request descriptions, answers, the retry policy.

A call is described once (`Call`), sent by either client's transport, and its answer is
turned into a value or an exception here, so the two clients differ only in `await`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from vidjobs import errors

USER_AGENT = "vidjobs-python"


@dataclass(frozen=True)
class Call:
    """One API request. `replay_safe`: sending it twice has the effect of sending it once
    (a GET, or a POST that carries an Idempotency-Key), so a broken connection may resend it."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    replay_safe: bool = True


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: httpx.Headers


@dataclass(frozen=True)
class RetryPolicy:
    """Connection errors, 429 and 503 are retried up to `attempts` times in all, waiting what
    the server's Retry-After says (at most `max_wait` s), else exponential backoff with jitter."""

    attempts: int = 5
    max_wait: float = 30.0

    def tenacity_kwargs(self, call: Call) -> dict[str, Any]:
        backoff = wait_random_exponential(multiplier=0.2, max=self.max_wait)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, errors.VidjobsError) and exc.retry_after is not None:
                return min(self.max_wait, max(0.0, exc.retry_after))
            return float(backoff(state))

        return {
            "stop": stop_after_attempt(max(1, self.attempts)),
            "wait": wait,
            "retry": retry_if_exception(lambda exc: retryable(exc, call)),
            "reraise": True,
        }


def retryable(exc: BaseException, call: Call) -> bool:
    if isinstance(exc, errors.RateLimited | errors.Unavailable):
        return True  # the server did not act on the request
    if isinstance(exc, errors.TransportError):
        return call.replay_safe or not exc.details.get("sent", True)
    return False


def transport_error(exc: httpx.TransportError) -> errors.TransportError:
    """A connection that was never made (nothing was sent) is safe to retry for any call."""
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    return errors.TransportError(
        f"{type(exc).__name__}: {exc}", code="transport_error", details={"sent": sent}
    )


def retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds, from either of its forms (seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def answer(resp: httpx.Response) -> Answer:
    """The decoded answer, or the exception for an error status."""
    try:
        body: Any = resp.json() if resp.content else None
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        raise errors.from_response(resp.status_code, body, retry_after(resp.headers))
    return Answer(resp.status_code, body, resp.headers)


def headers(token: str, user_agent: str | None) -> dict[str, str]:
    from vidjobs import __version__

    agent = f"{USER_AGENT}/{__version__}" + (f" {user_agent}" if user_agent else "")
    return {"Authorization": f"Bearer {token}", "User-Agent": agent}


def poll_delays(first: float = 0.2, cap: float = 2.0) -> Callable[[], float]:
    """Successive waits for polling a job: `first`, growing by half each time, up to `cap`."""
    state = {"next": first}

    def delay() -> float:
        value = state["next"]
        state["next"] = min(cap, value * 1.5)
        return value

    return delay
