"""The SSRF guard: schemes, credentials, private/loopback/link-local addresses, resolution,
allowlists, no DNS rebinding between check and connect, no redirects, capped bodies."""

from __future__ import annotations

import pytest

from jobs.urlguard import Policy, URLNotAllowed, address_allowed, check_url, resolve
from tests.support.receiver import Receiver, Reply
from workers.webhooks import http

STRICT = Policy()
OPEN = Policy(allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # plain http without allow_http
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://example.com/hook#frag",
        "https://exa mple.com/",
        "https://example.com:0/",
        "https://example.com:99999/",
        "https://ex\u00e4mple.com/",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_static_checks_refuse(url: str) -> None:
    with pytest.raises(URLNotAllowed) as err:
        check_url(url, STRICT)
    assert err.value.details[0]["path"] == "url"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "240.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address, STRICT)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address, STRICT)


def test_policy_allows_private_or_an_allowlisted_network_but_never_unspecified() -> None:
    assert address_allowed("10.1.2.3", Policy(allow_private=True))
    assert address_allowed("10.1.2.3", Policy(allowlist=("10.1.0.0/16",)))
    assert not address_allowed("10.2.0.1", Policy(allowlist=("10.1.0.0/16",)))
    assert not address_allowed("0.0.0.0", Policy(allow_private=True))


def fixed(*answers: list[str]):  # a resolver that records its calls
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, len(answers) - 1)]

    resolver.calls = calls  # type: ignore[attr-defined]
    return resolver


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(URLNotAllowed, match="private"):
        await resolve("https://hooks.example.com/x", STRICT, fixed(["10.0.0.7"]))


async def test_a_name_with_one_private_answer_among_public_ones_is_refused() -> None:
    with pytest.raises(URLNotAllowed):
        await resolve("https://hooks.example.com/x", STRICT, fixed(["93.184.216.34", "127.0.0.1"]))


async def test_real_dns_localhost_is_refused() -> None:
    with pytest.raises(URLNotAllowed):
        await resolve("https://localhost/x", STRICT)


async def test_an_allowlisted_host_name_passes() -> None:
    target = await resolve(
        "https://hooks.internal/x?a=1", Policy(allowlist=("hooks.internal",)), fixed(["10.0.0.7"])
    )
    assert target.address == "10.0.0.7" and target.path == "/x?a=1"
    assert target.connect_url == "https://10.0.0.7:443/x?a=1"
    assert target.host_header == "hooks.internal"


async def test_the_checked_address_is_the_one_connected_no_rebinding() -> None:
    """The resolver answers an allowed address, then (rebinding) a forbidden one: the request
    goes to the first, and the name is looked up only once."""
    receiver = await Receiver().start()
    resolver = fixed(["127.0.0.1"], ["10.9.9.9"])
    policy = Policy(allow_http=True, allowlist=("127.0.0.1/32",))
    try:
        outcome = await http.post(
            f"http://rebind.test:{receiver.port}/hook",
            {"webhook-id": "msg_1"},
            b"{}",
            policy=policy,
            time_limit=5,
            max_body_bytes=1024,
            resolver=resolver,
        )
    finally:
        await receiver.stop()
    assert outcome.ok, outcome
    assert resolver.calls == ["rebind.test"]  # type: ignore[attr-defined]
    (got,) = receiver.received
    assert got.headers["Host"] == f"rebind.test:{receiver.port}"


async def test_a_refused_address_is_never_connected() -> None:
    receiver = await Receiver().start()
    try:
        outcome = await http.post(
            f"http://127.0.0.1:{receiver.port}/hook",
            {},
            b"{}",
            policy=Policy(allow_http=True),
            time_limit=5,
            max_body_bytes=1024,
        )
    finally:
        await receiver.stop()
    assert outcome.status_code is None and "SSRF" in (outcome.error or "")
    assert receiver.received == []


async def test_response_bodies_are_capped() -> None:
    big = b"x" * (8 * 1024 * 1024)
    receiver = await Receiver(lambda n, r: Reply(200, body=big)).start()
    try:
        outcome = await http.post(
            receiver.url,
            {},
            b"{}",
            policy=OPEN,
            time_limit=10,
            max_body_bytes=64 * 1024,
        )
    finally:
        await receiver.stop()
    assert outcome.ok
    assert 64 * 1024 <= outcome.body_bytes < 1024 * 1024


async def test_redirects_are_not_followed() -> None:
    target = await Receiver().start()
    redirector = await Receiver(lambda n, r: Reply(302, {"Location": target.url})).start()
    try:
        outcome = await http.post(
            redirector.url, {}, b"{}", policy=OPEN, time_limit=5, max_body_bytes=10
        )
    finally:
        await target.stop()
        await redirector.stop()
    assert outcome.status_code == 302 and not outcome.ok
    assert target.received == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0", 0.0), ("999999", 86400.0), ("soon", None), (None, None)],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert http.parse_retry_after(value) == expected


def test_retry_after_as_an_http_date() -> None:
    import email.utils
    import time

    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    parsed = http.parse_retry_after(value)
    assert parsed is not None and 25 <= parsed <= 31
