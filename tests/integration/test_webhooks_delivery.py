"""Webhook delivery end to end on SQLite and a real PostgreSQL, to real HTTP receivers on
127.0.0.1: signatures (checked by the reference library), retries with one webhook-id,
410, Retry-After, disabling, rotation, replay, the ping, redirects, and two senders."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator

import pytest
import standardwebhooks

from jobs.db import Database
from jobs.settings import Settings
from tests.bus.helpers import wait_until
from tests.integration.webhook_stack import Hooks, hooks_on, verify
from tests.support.receiver import Receiver, Reply, free_port
from workers.webhooks.sender import Sender


@pytest.fixture
async def hooks(db_url: str, settings: Settings) -> AsyncIterator[Hooks]:
    async with hooks_on(db_url, settings) as h:
        yield h


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def outbox_event_id(hooks: Hooks, key: str, type_: str = "job.submitted") -> str:
    events = await hooks.c.service.events(hooks.tenant, key)
    return next(e.event_id for e in events if e.type == type_)


async def test_delivery_is_signed_per_standard_webhooks(hooks: Hooks, receiver: Receiver) -> None:
    ep = await hooks.endpoint(receiver.url)
    async with hooks.running(hooks.dispatcher()):
        key = await hooks.submit(1)
        (got,) = await receiver.wait_for(1)
        await wait_until(
            lambda: _all_finished(hooks, 1), what="delivery recorded as succeeded", timeout=10
        )
    payload = verify(str(ep["secret"]), got)
    assert payload["type"] == "job.submitted"
    assert payload["data"]["key"] == key and payload["data"]["status"] == "pending"
    assert payload["timestamp"].endswith("Z")
    assert got.headers["webhook-id"] == await outbox_event_id(hooks, key)
    assert got.headers["Content-Type"] == "application/json"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify("whsec_" + "A" * 43 + "=", got)
    (delivery,) = await hooks.deliveries()
    assert delivery.status == "succeeded" and delivery.attempts == 1
    (attempt,) = await hooks.attempts()
    assert attempt.status_code == 200 and attempt.outcome == "succeeded"


async def _all_finished(hooks: Hooks, n: int) -> bool:
    rows = await hooks.deliveries()
    return len(rows) >= n and all(r.status != "pending" for r in rows)


@pytest.mark.parametrize("failure", ["http_500", "timeout", "connection_refused"])
async def test_retries_use_the_same_webhook_id(hooks: Hooks, failure: str) -> None:
    port = free_port()
    if failure == "http_500":
        script = lambda n, r: Reply(500) if n == 0 else Reply(200)  # noqa: E731
    elif failure == "timeout":
        script = lambda n, r: Reply(200, delay=2.5) if n == 0 else Reply(200)  # noqa: E731
    else:
        script = lambda n, r: Reply(200)  # noqa: E731
    receiver = Receiver(script)
    if failure != "connection_refused":
        await receiver.start(port)
    ep = await hooks.endpoint(f"http://127.0.0.1:{port}/hook")
    try:
        async with hooks.running(hooks.dispatcher()):
            key = await hooks.submit(1)
            if failure == "connection_refused":
                await wait_until(lambda: _attempted(hooks), what="a refused attempt", timeout=10)
                await receiver.start(port)
                got = await receiver.wait_for(1)
            else:
                got = await receiver.wait_for(2)
            await wait_until(lambda: _all_finished(hooks, 1), what="success recorded", timeout=10)
    finally:
        await receiver.stop()
    event_id = await outbox_event_id(hooks, key)
    assert {g.headers["webhook-id"] for g in got} == {event_id}
    for g in got:
        verify(str(ep["secret"]), g)
    tries = await hooks.attempts()
    assert [t.outcome for t in tries][-1] == "succeeded"
    first = tries[0]
    assert first.outcome == "retry"
    if failure == "http_500":
        assert first.status_code == 500 and len(tries) == 2
    elif failure == "timeout":
        assert first.status_code is None and "timed out" in (first.error or "")
        assert 900 <= first.duration_ms < 2400
    else:
        assert first.status_code is None and "Connect" in (first.error or ""), first.error
    assert all(json.loads(g.body) == json.loads(got[0].body) for g in got)


async def _attempted(hooks: Hooks) -> bool:
    return bool(await hooks.attempts())


async def test_410_disables_the_endpoint_and_tells_the_others(hooks: Hooks) -> None:
    gone = await Receiver(lambda n, r: Reply(410)).start()
    watcher = await Receiver().start()
    try:
        ep = await hooks.endpoint(gone.url)
        other = await hooks.endpoint(watcher.url, ["webhook.endpoint.disabled"])
        async with hooks.running(hooks.dispatcher()):
            await hooks.submit(1)
            (notice,) = await watcher.wait_for(1)
            await hooks.submit(2)
            await asyncio.sleep(1.0)  # the second event: owed to no enabled endpoint
        assert len(gone.received) == 1
    finally:
        await gone.stop()
        await watcher.stop()
    row = await hooks.endpoint_row(str(ep["id"]))
    assert row.enabled is False and "410" in (row.disabled_reason or "")
    body = verify(str(other["secret"]), notice)
    assert body["type"] == "webhook.endpoint.disabled"
    assert body["data"]["id"] == ep["id"] and body["data"]["enabled"] is False
    assert "secret" not in body["data"]
    statuses = collections.Counter(d.status for d in await hooks.deliveries())
    assert statuses == {"failed": 1, "succeeded": 1}


async def test_retry_after_is_honoured(hooks: Hooks) -> None:
    receiver = await Receiver(
        lambda n, r: Reply(503, {"Retry-After": "2"}) if n == 0 else Reply(200)
    ).start()
    try:
        await hooks.endpoint(receiver.url)
        async with hooks.running(hooks.dispatcher()):
            await hooks.submit(1)
            first, second = await receiver.wait_for(2, timeout=15)
    finally:
        await receiver.stop()
    # The schedule alone would have retried after 0.2 s.
    assert second.at - first.at >= 1.9
    assert second.headers["webhook-id"] == first.headers["webhook-id"]


async def test_an_endpoint_failing_for_long_is_disabled_with_an_event(
    db_url: str, settings: Settings
) -> None:
    failing = await Receiver(lambda n, r: Reply(500)).start()
    watcher = await Receiver().start()
    try:
        async with hooks_on(
            db_url,
            settings,
            webhook_disable_after_seconds=1.0,
            webhook_retry_schedule=[0.0] + [0.3] * 20,
        ) as hooks:
            ep = await hooks.endpoint(failing.url)
            other = await hooks.endpoint(watcher.url, ["*"])
            async with hooks.running(hooks.dispatcher()):
                await hooks.submit(1)
                # `other` gets job.submitted, then the disabled notice.
                got = await watcher.wait_for(2, timeout=15)
            row = await hooks.endpoint_row(str(ep["id"]))
    finally:
        await failing.stop()
        await watcher.stop()
    assert row.enabled is False and "failed for" in (row.disabled_reason or "")
    types = [verify(str(other["secret"]), g)["type"] for g in got]
    assert "webhook.endpoint.disabled" in types
    assert len(failing.received) >= 3  # it kept retrying until the endpoint was disabled


async def test_secret_rotation_signs_with_both_then_only_the_new(
    hooks: Hooks, receiver: Receiver
) -> None:
    ep = await hooks.endpoint(receiver.url)
    old = str(ep["secret"])
    async with hooks.running(hooks.dispatcher()):
        await hooks.submit(1)
        await receiver.wait_for(1)
        r = await hooks.api.post(
            f"/v1/webhooks/{ep['id']}/rotate-secret",
            json={"grace_seconds": 1.5},
            headers=hooks.auth(),
        )
        new = r.json()["secret"]
        await hooks.submit(2)
        await receiver.wait_for(2)
        await asyncio.sleep(1.6)
        await hooks.submit(3)
        before, during, after = await receiver.wait_for(3)
    assert len(before.headers["webhook-signature"].split()) == 1
    verify(old, before)
    assert len(during.headers["webhook-signature"].split()) == 2
    verify(old, during)
    verify(new, during)
    assert len(after.headers["webhook-signature"].split()) == 1
    verify(new, after)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(old, after)


async def test_replay_and_ping_are_delivered(hooks: Hooks, receiver: Receiver) -> None:
    ep = await hooks.endpoint(receiver.url)
    async with hooks.running(hooks.dispatcher()):
        await hooks.submit(1)
        await receiver.wait_for(1)
        await wait_until(lambda: _all_finished(hooks, 1), what="first delivery", timeout=10)
        (first,) = await hooks.deliveries()
        r = await hooks.api.post(
            f"/v1/webhooks/{ep['id']}/deliveries/{first.id}/replay", headers=hooks.auth()
        )
        assert r.status_code == 202
        r = await hooks.api.post(f"/v1/webhooks/{ep['id']}/test", headers=hooks.auth())
        assert r.status_code == 202
        original, replayed, ping = await receiver.wait_for(3)
        await wait_until(lambda: _all_finished(hooks, 3), what="all recorded", timeout=10)
        listed = await hooks.api.get(f"/v1/webhooks/{ep['id']}/deliveries", headers=hooks.auth())
    assert replayed.headers["webhook-id"] == original.headers["webhook-id"]
    assert replayed.body == original.body
    verify(str(ep["secret"]), replayed)
    assert verify(str(ep["secret"]), ping)["type"] == "webhook.test"
    views = listed.json()["deliveries"]
    assert [v["status"] for v in views] == ["succeeded"] * 3
    assert views[1]["replay_of"] == first.id
    (att,) = views[2]["attempts"]
    assert att["status_code"] == 200 and att["duration_ms"] >= 0 and att["at"]


async def test_redirects_are_not_followed(hooks: Hooks) -> None:
    target = await Receiver().start()
    redirector = await Receiver(
        lambda n, r: Reply(307, {"Location": target.url}) if n == 0 else Reply(200)
    ).start()
    try:
        await hooks.endpoint(redirector.url)
        async with hooks.running(hooks.dispatcher()):
            await hooks.submit(1)
            await redirector.wait_for(2)
            await wait_until(lambda: _all_finished(hooks, 1), what="recorded", timeout=10)
    finally:
        await target.stop()
        await redirector.stop()
    assert target.received == []
    first = (await hooks.attempts())[0]
    assert first.status_code == 307 and first.outcome == "retry"


async def test_two_senders_never_send_the_same_attempt(hooks: Hooks) -> None:
    """Two delivery loops on their own engines share 60 owed deliveries: each sent once."""
    receiver = await Receiver(lambda n, r: Reply(200, delay=0.1)).start()
    await hooks.endpoint(receiver.url)
    keys = [await hooks.submit(i) for i in range(60)]
    dispatcher = hooks.dispatcher()  # its consumer handler only: the senders run below
    for key in keys:
        for event in await hooks.c.service.events(hooks.tenant, key):
            await dispatcher.handle(_record(hooks, event))
    other_db = Database(hooks.db.url)
    # A deadline no attempt reaches on a loaded machine: every send is then a first attempt.
    few = hooks.settings.model_copy(
        update={"webhook_concurrency": 4, "webhook_timeout_seconds": 20.0}
    )
    senders = [Sender(hooks.db, few), Sender(other_db, few)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    try:
        await receiver.wait_for(60)
        await wait_until(lambda: _all_finished(hooks, 60), what="all recorded", timeout=20)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await other_db.dispose()
        await receiver.stop()
    counts = collections.Counter(g.headers["webhook-id"] for g in receiver.received)
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert all(s.attempted > 0 for s in senders), [s.attempted for s in senders]
    assert [t.attempt for t in await hooks.attempts()] == [1] * 60


def _record(hooks: Hooks, event: object) -> object:
    from workers.bus.base import Record
    from workers.bus.events import message_for

    msg = message_for(event)  # type: ignore[arg-type]
    return Record(partition=0, offset=0, key=msg.key, value=msg.value, headers=msg.headers)


async def test_only_the_tenants_subscribed_endpoints_get_its_events(
    hooks: Hooks, receiver: Receiver
) -> None:
    from jobs.tenants import create_tenant
    from jobs.webhooks.service import EndpointCreate, WebhookService

    async with hooks.db.transaction() as conn:
        other, _ = await create_tenant(conn, "globex")
    service = WebhookService(hooks.db, hooks.settings)
    stranger = await Receiver().start()
    try:
        await service.create(other, EndpointCreate(url=stranger.url, events=["*"]))
        ep = await hooks.endpoint(receiver.url, ["job.cancelled"])
        async with hooks.running(hooks.dispatcher()):
            keep = await hooks.submit(1)
            drop = await hooks.submit(2)
            await hooks.c.service.cancel(hooks.tenant, drop)
            (got,) = await receiver.wait_for(1)
            await asyncio.sleep(1.0)  # nothing else comes, to either receiver
        assert len(receiver.received) == 1 and stranger.received == []
    finally:
        await stranger.stop()
    payload = verify(str(ep["secret"]), got)
    assert payload["type"] == "job.cancelled" and payload["data"]["key"] == drop != keep
    assert payload["data"]["status"] == "cancelled"
