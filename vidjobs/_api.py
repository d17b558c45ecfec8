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


def tasks(key: str) -> Call:
    return Call("GET", _job(key, "/tasks"))


def playback(key: str) -> Call:
    return Call("GET", _job(key, "/playback"))


def output_path(key: str, name: str | None = None) -> str:
    """The single output's URL, or the named output's (`outputs[].name`)."""
    return _job(key, "/output" if name is None else f"/outputs/{quote(name, safe='')}")


def package_file_path(key: str, name: str) -> str:
    return _job(key, f"/package/{quote(name, safe='')}")


# --- webhook endpoints (`/v1/webhooks`) ---------------------------------------------------


def _hook(endpoint_id: str, tail: str = "") -> str:
    return f"/v1/webhooks/{quote(endpoint_id, safe='')}{tail}"


def create_webhook(url: str, events: list[str], description: str | None) -> Call:
    # Not replay-safe: a resent create makes a second endpoint.
    body: dict[str, Any] = {"url": url, "events": events}
    if description is not None:
        body["description"] = description
    return Call("POST", "/v1/webhooks", json=body, replay_safe=False)


def list_webhooks() -> Call:
    return Call("GET", "/v1/webhooks")


def get_webhook(endpoint_id: str) -> Call:
    return Call("GET", _hook(endpoint_id))


def update_webhook(endpoint_id: str, changes: dict[str, Any]) -> Call:
    return Call("PATCH", _hook(endpoint_id), json=changes)


def delete_webhook(endpoint_id: str) -> Call:
    return Call("DELETE", _hook(endpoint_id))


def rotate_webhook_secret(endpoint_id: str, grace_seconds: float | None) -> Call:
    body = {"grace_seconds": grace_seconds} if grace_seconds is not None else None
    return Call("POST", _hook(endpoint_id, "/rotate-secret"), json=body, replay_safe=False)


def webhook_deliveries(endpoint_id: str, limit: int, before: int | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if before is not None:
        params["before"] = before
    return Call("GET", _hook(endpoint_id, "/deliveries"), params=params)


def replay_delivery(endpoint_id: str, delivery_id: int) -> Call:
    return Call(
        "POST", _hook(endpoint_id, f"/deliveries/{int(delivery_id)}/replay"), replay_safe=False
    )


def ping_webhook(endpoint_id: str) -> Call:
    return Call("POST", _hook(endpoint_id, "/test"), replay_safe=False)
