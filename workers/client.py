"""A small HTTP client for the CLI's client commands (submit, status, jobs)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from jobs.settings import CREDENTIALS, Settings


class ClientError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status}: {err.get('message', body)}")


def connection(settings: Settings) -> tuple[str, str]:
    """Server URL and token: from VIDJOBS_API_URL/VIDJOBS_API_TOKEN, else the data dir."""
    url, token = settings.api_url, settings.api_token
    path = settings.data_dir / CREDENTIALS
    if (not url or not token) and path.is_file():
        saved = json.loads(path.read_text())
        url = url or saved.get("url")
        token = token or saved.get("token")
    if not url or not token:
        raise SystemExit(
            "no server to talk to: run `vidjobs up` (it saves its URL and token in the data "
            "dir), or set VIDJOBS_API_URL and VIDJOBS_API_TOKEN"
        )
    return url.rstrip("/"), token


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any], httpx.Headers]:
        resp = self.http.request(method, path, **kw)
        try:
            body = resp.json()
        except ValueError:
            body = {"error": {"message": resp.text[:500]}}
        if resp.status_code >= 400:
            raise ClientError(resp.status_code, body)
        return resp.status_code, body, resp.headers

    def submit(self, edit: dict[str, Any], **params: Any) -> tuple[int, dict[str, Any], bool]:
        headers = {}
        if key := params.pop("idempotency_key", None):
            headers["Idempotency-Key"] = key
        status, body, hdrs = self._call(
            "POST", "/v1/jobs", json=edit, params=params, headers=headers
        )
        return status, body, hdrs.get("Idempotent-Replayed") == "true"

    def submit_batch(self, edits: list[Any], **params: Any) -> tuple[list[dict[str, Any]], bool]:
        """POST /v1/jobs/batch: each edit's result in order, and whether it was replayed."""
        headers = {}
        if key := params.pop("idempotency_key", None):
            headers["Idempotency-Key"] = key
        _, body, hdrs = self._call(
            "POST", "/v1/jobs/batch", json={"jobs": edits}, params=params, headers=headers
        )
        return list(body["results"]), hdrs.get("Idempotent-Replayed") == "true"

    def get(self, key: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{key}")[1]

    def list(self, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/v1/jobs", params=params)[1]
