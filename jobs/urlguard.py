"""SSRF guard for URLs the server itself fetches (webhook endpoints; later URL imports).

A URL passes `check_url` (scheme, host, no credentials) and then `resolve`, which looks the
host up once and refuses private, loopback, link-local, multicast, reserved and other
non-global addresses unless the policy allows them (`VIDJOBS_WEBHOOK_ALLOW_PRIVATE`, or an
allowlist of host names and CIDR networks). The caller then connects to the very address
that was checked (`Target.connect_url`, with the host name kept for the Host header and TLS
SNI), so a DNS answer that changes between the check and the connect (rebinding) is never
used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from jobs.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL_LENGTH = 2000


class URLNotAllowed(InvalidRequest):
    """The URL may not be fetched: wrong scheme, credentials, or a non-public address."""

    code = "url_not_allowed"


@dataclass(frozen=True)
class Policy:
    allow_http: bool = False
    allow_private: bool = False
    allowlist: tuple[str, ...] = ()  # host names (exact, lower case) or CIDR networks

    def networks(self) -> list[Network]:
        nets: list[Network] = []
        for item in self.allowlist:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # a host name
        return nets

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in {a.lower().rstrip(".") for a in self.allowlist}


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to instead of looking the host up again."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    path: str  # path and query, as sent

    @property
    def connect_url(self) -> str:
        ip = ipaddress.ip_address(self.address)
        where = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{where}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _refuse(url: str, message: str, allowed: str) -> URLNotAllowed:
    return URLNotAllowed(message, details=[{"path": "url", "message": message, "allowed": allowed}])


def check_url(url: str, policy: Policy) -> SplitResult:
    """The static checks (no DNS): absolute http(s) URL with a host and no credentials."""
    if len(url) > MAX_URL_LENGTH or not url.isascii() or any(ch.isspace() for ch in url):
        raise _refuse(
            url,
            "the URL is too long or has spaces or non-ASCII characters",
            f"an ASCII URL of at most {MAX_URL_LENGTH} characters (IDNA-encode hosts)",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(url, f"the URL is malformed: {exc}", "https://host[:port]/path") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise _refuse(
            url, f"scheme {parts.scheme or '(none)'!r} is not allowed", " or ".join(schemes)
        )
    if not parts.hostname:
        raise _refuse(url, "the URL has no host", "https://host[:port]/path")
    if parts.username is not None or parts.password is not None:
        raise _refuse(url, "credentials in the URL are not allowed", "a URL without user:password@")
    if parts.fragment:
        raise _refuse(url, "a fragment (#...) is not sent and not allowed", "a URL without #...")
    if port == 0:
        raise _refuse(url, "port 0 is not allowed", "a port from 1 to 65535")
    return parts


def unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it stands for."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(ip: IPAddress) -> bool:
    """A global unicast address: not loopback, private, link-local, CGNAT, reserved,
    multicast or unspecified (in any IPv4-mapped form either). URL imports use it too."""
    ip = unmapped(ip)
    return ip.is_global and not (ip.is_reserved or ip.is_multicast or ip.is_unspecified)


def address_allowed(address: str, policy: Policy) -> bool:
    """Whether connecting to `address` is allowed: a global unicast one, or allowed by policy."""
    ip = unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
    if ip.is_unspecified or ip.is_multicast:
        return False  # never a real destination
    if any(ip in net for net in policy.networks()):
        return True
    if policy.allow_private:
        return True
    return is_public(ip)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def resolve(url: str, policy: Policy, resolver: Resolver | None = None) -> Target:
    """Check `url`, look its host up once and pick an allowed address, or raise URLNotAllowed.

    Every address the name resolves to must be allowed (a name that also points inside is
    refused), and the first one is the one to connect to.
    """
    parts = check_url(url, policy)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    addresses: Sequence[str]
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise _refuse(
                url, f"the host {host!r} could not be resolved: {exc}", "a host name that resolves"
            ) from None
    if not addresses:
        raise _refuse(url, f"the host {host!r} has no address", "a host name that resolves")
    if not policy.host_allowed(host):
        blocked = [a for a in addresses if not address_allowed(a, policy)]
        if blocked:
            raise _refuse(
                url,
                f"{host!r} resolves to a private, loopback, link-local or reserved address"
                f" ({blocked[0]})",
                "a host with public addresses only (or VIDJOBS_WEBHOOK_ALLOW_PRIVATE / "
                "VIDJOBS_WEBHOOK_ALLOWLIST)",
            )
    return Target(
        url=url, scheme=parts.scheme, host=host, port=port, address=addresses[0], path=path
    )
