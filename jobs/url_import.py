"""URL imports: `POST /v1/sources {"url": ...}` fetches a file server-side, with an SSRF guard.

- https only, unless the target is allowed by `VIDJOBS_URL_SOURCE_ALLOW`; no credentials in
  the URL; at most 5 redirects, each one re-checked like the first URL.
- Every address a host name resolves to must be public: private, loopback, link-local,
  multicast, reserved and unspecified addresses (IPv4-mapped ones too) are refused unless
  `URL_SOURCE_ALLOW` names them (an address or network: any port; `host:port`: that port).
  The check runs in the connector's resolver, so the address connected to is the address
  checked (no DNS rebinding between check and connect).
- Nothing of the caller's is forwarded (no headers, no cookies, no proxy from the
  environment); the body streams to scratch while it is hashed, with a size cap and a time
  cap (`URL_SOURCE_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from jobs.errors import InvalidRequest, PayloadTooLarge
from jobs.storage import Storage
from jobs.urlguard import is_public

MAX_REDIRECTS = 5
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlNotAllowed(InvalidRequest):
    code = "url_not_allowed"


class UrlFetchFailed(InvalidRequest):
    code = "url_fetch_failed"


def _refuse(url: str, why: str) -> UrlNotAllowed:
    return UrlNotAllowed(
        f"this URL may not be imported: {why}",
        details=[
            {
                "path": "url",
                "message": why,
                "allowed": "an https URL of a public host (or one VIDJOBS_URL_SOURCE_ALLOW names)",
            }
        ],
    )


class Allow:
    """`VIDJOBS_URL_SOURCE_ALLOW`: addresses/networks (any port) and host:port pairs."""

    def __init__(self, entries: list[str]) -> None:
        self.networks: list[Network] = []
        self.hostports: set[tuple[str, int]] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"VIDJOBS_URL_SOURCE_ALLOW entry {raw!r}: use an IP, a CIDR or host:port"
                )
            self.hostports.add((host.strip("[]"), int(port)))

    def target(self, host: str, port: int) -> bool:
        return (host.lower(), port) in self.hostports

    def address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return any(ip in net for net in self.networks) or (str(ip), port) in self.hostports


class _GuardedResolver(AbstractResolver):
    """Resolves like the system, then refuses any non-public address not allowed."""

    def __init__(self, allow: Allow) -> None:
        self.allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=socket.AF_UNSPEC
        )
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0])
            allowed = self.allow.target(host, port) or self.allow.address(ip, port)
            if not is_public(ip) and not allowed:
                raise _refuse(host, f"{host} resolves to {ip}, a non-public address")
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise UrlFetchFailed(f"{host} does not resolve", details=[{"path": "url"}])
        return results

    async def close(self) -> None:
        return None


def _check_url(url: str, allow: Allow) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _refuse(url, "it is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _refuse(url, "only https URLs can be imported")
    if parts.username is not None or parts.password is not None:
        raise _refuse(url, "URLs with credentials are not accepted")
    host = parts.hostname
    try:  # an address literal is never resolved, so the connector's check would not see it
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None and not is_public(ip) and not allow.address(ip, port):
        raise _refuse(url, f"{ip} is a non-public address")
    if parts.scheme == "http" and not _http_allowed(host, port, allow):
        raise _refuse(url, "plain http is only allowed for targets VIDJOBS_URL_SOURCE_ALLOW names")


def _http_allowed(host: str, port: int, allow: Allow) -> bool:
    if allow.target(host, port):
        return True
    try:
        return allow.address(ipaddress.ip_address(host.strip("[]")), port)
    except ValueError:
        return False


async def fetch_url(
    url: str, storage: Storage, *, allow: Allow, max_bytes: int, time_cap: float
) -> tuple[str, int, Path, str | None]:
    """Download `url` into the scratch dir while hashing it: (digest, size, file, its
    Content-Type)."""
    connector = aiohttp.TCPConnector(resolver=_GuardedResolver(allow), use_dns_cache=False)
    client_timeout = aiohttp.ClientTimeout(total=time_cap, sock_connect=min(time_cap, 10))
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=client_timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(url, allow)
                async with session.get(url, allow_redirects=False, headers={"Accept": "*/*"}) as r:
                    if r.status in (301, 302, 303, 307, 308) and "location" in r.headers:
                        url = urljoin(url, r.headers["location"])
                        continue
                    if r.status != 200:
                        raise UrlFetchFailed(
                            f"the URL answered HTTP {r.status}", details=[{"path": "url"}]
                        )
                    declared = r.content_length
                    if declared is not None and declared > max_bytes:
                        raise _too_large(max_bytes)
                    digest, size, path = await storage.receive(_chunks(r), max_bytes)
                    return digest, size, path, r.headers.get("content-type")
            raise UrlFetchFailed(f"more than {MAX_REDIRECTS} redirects", details=[{"path": "url"}])
    except (UrlNotAllowed, UrlFetchFailed, PayloadTooLarge):
        raise
    except TimeoutError:
        raise UrlFetchFailed(
            f"the download did not finish within {time_cap:g} s", details=[{"path": "url"}]
        ) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.__cause__, UrlNotAllowed):
            raise exc.__cause__ from None
        raise UrlFetchFailed(
            f"could not connect: {exc.strerror or exc}", details=[{"path": "url"}]
        ) from None
    except aiohttp.ClientError as exc:
        raise UrlFetchFailed(f"the download failed: {exc}", details=[{"path": "url"}]) from None


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_chunked(1024 * 1024):
        yield chunk


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file at the URL is larger than the limit of {limit} bytes",
        details={"limit_bytes": limit},
    )


__all__ = ["Allow", "UrlFetchFailed", "UrlNotAllowed", "fetch_url"]
