"""/v1/webhooks against SQLite and a real PostgreSQL: CRUD, isolation, validation, rotation,
deliveries, replay and the test ping (sending is tested in test_webhooks_delivery)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from jobs.api import ApiState, create_app
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.tenants import create_tenant

HOOK = "http://127.0.0.1:9/hook"


def make_app(db: Database, settings: Settings) -> FastAPI:
    return create_app(
        ApiState(
            db=db,
            service=JobService(db, settings),
            settings=settings,
            blobs=LocalStorage(settings.data_dir / "blobs"),
        )
    )


@pytest.fixture
def open_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_http": True, "webhook_allow_private": True})


@pytest.fixture
async def tokens(db: Database) -> dict[str, str]:
    async with db.transaction() as conn:
        _, a = await create_tenant(conn, "acme")
        _, b = await create_tenant(conn, "globex")
    return {"acme": a, "globex": b}


@pytest.fixture
async def http(db: Database, open_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(db, open_settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create(http: httpx.AsyncClient, token: str, **body: object) -> dict[str, object]:
    r = await http.post("/v1/webhooks", json={"url": HOOK, **body}, headers=auth(token))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_endpoint_lifecycle_secret_shown_once(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    h = auth(tokens["acme"])
    made = await create(
        http, tokens["acme"], events=["job.succeeded", "job.failed"], description="prod"
    )
    assert str(made["secret"]).startswith("whsec_")
    assert made["events"] == ["job.failed", "job.succeeded"] and made["enabled"] is True
    ep = made["id"]
    got = (await http.get(f"/v1/webhooks/{ep}", headers=h)).json()
    assert "secret" not in got and got["url"] == HOOK
    listed = (await http.get("/v1/webhooks", headers=h)).json()["webhooks"]
    assert [w["id"] for w in listed] == [ep] and "secret" not in listed[0]
    patched = await http.patch(
        f"/v1/webhooks/{ep}", json={"events": ["*"], "enabled": False}, headers=h
    )
    assert patched.status_code == 200 and patched.json()["events"] == ["*"]
    assert patched.json()["enabled"] is False
    assert (await http.delete(f"/v1/webhooks/{ep}", headers=h)).status_code == 204
    assert (await http.get(f"/v1/webhooks/{ep}", headers=h)).status_code == 404
    assert (await http.get("/v1/webhooks", headers=h)).json()["webhooks"] == []


async def test_another_tenants_endpoint_is_a_404_identical_to_a_missing_one(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    ep = (await create(http, tokens["acme"]))["id"]
    ping = await http.post(f"/v1/webhooks/{ep}/test", headers=auth(tokens["acme"]))
    delivery = ping.json()["id"]
    calls = [
        ("GET", f"/v1/webhooks/{ep}", None),
        ("PATCH", f"/v1/webhooks/{ep}", {"description": "mine now"}),
        ("POST", f"/v1/webhooks/{ep}/rotate-secret", None),
        ("GET", f"/v1/webhooks/{ep}/deliveries", None),
        ("POST", f"/v1/webhooks/{ep}/test", None),
        ("POST", f"/v1/webhooks/{ep}/deliveries/{delivery}/replay", None),
        ("DELETE", f"/v1/webhooks/{ep}", None),
    ]
    foreign = []
    for method, path, body in calls:
        r = await http.request(method, path, json=body, headers=auth(tokens["globex"]))
        foreign.append((r.status_code, r.json()))
    assert (await http.get("/v1/webhooks", headers=auth(tokens["globex"]))).json() == {
        "webhooks": []
    }
    # Still there, untouched, for its owner; then gone, and the same calls answer the same.
    still = (await http.get(f"/v1/webhooks/{ep}", headers=auth(tokens["acme"]))).json()
    assert still["description"] == "" and still["previous_secret_expires_at"] is None
    assert (
        await http.delete(f"/v1/webhooks/{ep}", headers=auth(tokens["acme"]))
    ).status_code == 204
    missing = []
    for method, path, body in calls:
        r = await http.request(method, path, json=body, headers=auth(tokens["acme"]))
        missing.append((r.status_code, r.json()))
    assert foreign == missing
    assert all(code == 404 for code, _ in foreign)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": HOOK, "events": ["job.exploded"]}, "events"),
        ({"url": HOOK, "events": []}, "events"),
        ({"url": HOOK, "colour": "red"}, "colour"),
        ({"url": HOOK, "description": "x" * 501}, "description"),
    ],
)
async def test_bad_endpoints_are_422_naming_the_field(
    http: httpx.AsyncClient, tokens: dict[str, str], body: dict[str, object], path: str
) -> None:
    r = await http.post("/v1/webhooks", json=body, headers=auth(tokens["acme"]))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] in ("invalid_request", "url_not_allowed")
    assert any(d["path"].startswith(path) for d in err["details"]), err


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://93.184.216.34/hook",  # plain http, public address
    ],
)
async def test_default_policy_refuses_private_addresses_and_http(
    db: Database, settings: Settings, tokens: dict[str, str], url: str
) -> None:
    transport = httpx.ASGITransport(app=make_app(db, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post("/v1/webhooks", json={"url": url}, headers=auth(tokens["acme"]))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "url_not_allowed"
    assert r.json()["error"]["details"][0]["path"] == "url"


async def test_rotate_secret_returns_a_new_one_and_a_grace_period(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    made = await create(http, tokens["acme"])
    r = await http.post(
        f"/v1/webhooks/{made['id']}/rotate-secret",
        json={"grace_seconds": 60},
        headers=auth(tokens["acme"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("whsec_") and r.json()["secret"] != made["secret"]
    assert r.json()["previous_secret_expires_at"] is not None
    bad = await http.post(
        f"/v1/webhooks/{made['id']}/rotate-secret",
        json={"grace_seconds": -1},
        headers=auth(tokens["acme"]),
    )
    assert bad.status_code == 422


async def test_ping_and_replay_queue_deliveries_with_the_same_webhook_id(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    h = auth(tokens["acme"])
    ep = (await create(http, tokens["acme"], events=["job.succeeded"]))["id"]
    ping = await http.post(f"/v1/webhooks/{ep}/test", headers=h)
    assert ping.status_code == 202, ping.text
    assert ping.json()["type"] == "webhook.test" and ping.json()["status"] == "pending"
    replay = await http.post(f"/v1/webhooks/{ep}/deliveries/{ping.json()['id']}/replay", headers=h)
    assert replay.status_code == 202, replay.text
    assert replay.json()["event_id"] == ping.json()["event_id"]
    assert replay.json()["replay_of"] == ping.json()["id"]
    page = (await http.get(f"/v1/webhooks/{ep}/deliveries?limit=1", headers=h)).json()
    assert [d["id"] for d in page["deliveries"]] == [replay.json()["id"]]
    rest = await http.get(f"/v1/webhooks/{ep}/deliveries?before={page['next_before']}", headers=h)
    assert [d["id"] for d in rest.json()["deliveries"]] == [ping.json()["id"]]
    missing = await http.post(f"/v1/webhooks/{ep}/deliveries/999999/replay", headers=h)
    assert missing.status_code == 404
