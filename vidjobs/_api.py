"""The API's calls, described once for both clients."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from vidjobs._http import Call


def _job(key: str, tail: str = "") -> str:
    return f"/v1/jobs/{quote(key, safe='')}{tail}"


def submit(
    edit: dict[str, Any], *, on_duplicate: str | None, idempotency_key: str | None
) -> Call:
    """A submission always carries an Idempotency-Key, made once per logical call, so a
    retry of a request whose answer was lost makes no second job."""
    params = {"on_duplicate": on_duplicate} if on_duplicate else None
    key = idempotency_key or f"vjc_{uuid.uuid4().hex}"
    return Call("POST", "/v1/jobs", params=params, json=edit, headers={"Idempotency-Key": key})


def submit_many(
    edits: list[dict[str, Any]], *, on_duplicate: str | None, idempotency_key: str | None
) -> Call:
    """`POST /v1/jobs/batch`: up to 1,000 edits answered item by item, in order."""
    params = {"on_duplicate": on_duplicate} if on_duplicate else None
    key = idempotency_key or f"vjc_{uuid.uuid4().hex}"
    return Call(
        "POST", "/v1/jobs/batch", params=params, json={"jobs": edits},
        headers={"Idempotency-Key": key},
    )


def get(key: str) -> Call:
    return Call("GET", _job(key))


def list_jobs(status: str | None, limit: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if cursor:
        params["cursor"] = cursor
    return Call("GET", "/v1/jobs", params=params)


def cancel(key: str) -> Call:
    return Call("POST", _job(key, "/cancel"))  # cancelling twice leaves it cancelled


def retry(key: str) -> Call:
    # A second retry of a job that the first one already queued answers 409: not replay-safe.
    return Call("POST", _job(key, "/retry"), replay_safe=False)


def events(key: str) -> Call:
    return Call("GET", _job(key, "/events"))


def output_path(key: str) -> str:
    return _job(key, "/output")
