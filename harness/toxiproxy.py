"""A small client of toxiproxy's HTTP API (Shopify/toxiproxy v2), for the fault harness.

The one PyPI client (toxiproxy-python 0.1.1, 2019) is unmaintained, and the API is a handful
of JSON calls, so this is written here. A proxy listens on 127.0.0.1 and forwards to one
upstream; toxics (latency, bandwidth, reset_peer, timeout) act on its streams; a disabled
proxy refuses new connections and closes the open ones.

    https://github.com/Shopify/toxiproxy#http-api
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ToxiproxyError(RuntimeError):
    pass


@dataclass
class Toxiproxy:
    api: str  # http://127.0.0.1:PORT

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(method, f"{self.api}{path}", json=body, timeout=10)
        if r.status_code >= 300:
            raise ToxiproxyError(f"{method} {path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def create(self, name: str, upstream: str, listen_port: int = 0) -> int:
        """A proxy to `upstream`; with port 0 the server picks a free one. Returns the port."""
        made = self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": f"127.0.0.1:{listen_port}", "upstream": upstream, "enabled": True},
        )
        return int(made["listen"].rsplit(":", 1)[1])

    def proxies(self) -> dict[str, Any]:
        return dict(self._call("GET", "/proxies"))

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(
        self, proxy: str, kind: str, stream: str = "downstream", toxicity: float = 1.0, **attributes: Any
    ) -> str:
        """Add a toxic to one direction of a proxy; returns its name (for remove_toxic)."""
        name = f"{kind}_{stream}"
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes},
        )
        return name

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/proxies/{proxy}/toxics"))

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self._call("POST", "/reset")
