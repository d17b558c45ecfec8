"""The console over HTTP (no browser), on SQLite and PostgreSQL: the session cookie's flags,
CSRF and cross-site refusals, tenant isolation of every console URL, hostile input answered
without a 5xx, and the operator command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobs.console.auth import create_operator
from jobs.db import Database
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import TenantRef, create_tenant, revoke_tokens
from tests.integration.test_tasks import make_graph, plan
from workers import compose


@pytest.fixture
async def app_client(db_url: str, settings: Settings) -> AsyncIterator[tuple[compose.Components, httpx.AsyncClient]]:
    c = compose.build(settings.model_copy(update={"database_url": db_url}))
    transport = httpx.ASGITransport(app=c.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield c, client
    await c.close()


async def tenant_with_job(c: compose.Components, name: str) -> tuple[TenantRef, str, str]:
    async with c.db.transaction() as conn:
        tenant, token = await create_tenant(conn, name)
    req = EditRequest.model_validate({"source": {"path": "clip.mp4"}, "labels": {"team": "news"}})
    job = (await c.service.submit(tenant, req)).job
    return tenant, token, job.key


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/console/login", data={"token": token})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = await client.get("/console/jobs")
    assert page.status_code == 200
    return page.text.split('data-csrf="')[1].split('"')[0]


async def test_actions_need_the_csrf_token_and_cross_site_sign_in_is_refused(app_client) -> None:
    c, client = app_client
    tenant, token, key = await tenant_with_job(c, "csrf-acme")
    csrf = await sign_in(client, token)
    url = f"/console/jobs/{tenant.id}/{key}/cancel"
    assert (await client.post(url)).status_code == 403
    assert (await client.post(url, headers={"X-CSRF-Token": "wrong"})).status_code == 403
    assert (await c.service.get(tenant, key)).status == "pending"  # nothing changed
    r = await client.post(url, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the same rules as the API: retry of a cancelled job requeues it; retry of a pending
    # one is refused with the API's error body (409), not a 5xx
    r = await client.post(f"/console/jobs/{tenant.id}/{key}/retry", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    r = await client.post(f"/console/jobs/{tenant.id}/{key}/retry", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and r.json()["error"]["code"]
    bulk = await client.post("/console/jobs/bulk", data={"op": "cancel:matching"})
    assert bulk.status_code == 403
    evil = await client.post("/console/login", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403


async def test_a_tenant_session_reaches_no_other_tenants_job(app_client) -> None:
    c, client = app_client
    _, token, _ = await tenant_with_job(c, "own-acme")
    other, _, theirs = await tenant_with_job(c, "own-globex")
    csrf = await sign_in(client, token)
    base = f"/console/jobs/{other.id}/{theirs}"
    for path in (base, f"{base}/stream", f"{base}/output", f"{base}/tasks"):
        assert (await client.get(path)).status_code == 404, path
    r = await client.post(f"{base}/cancel", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404
    # bulk "selected" with another tenant's job in the form: not touched
    r = await client.post("/console/jobs/bulk", data={"csrf": csrf, "op": "cancel:selected",
                                                       "job": f"{other.id}/{theirs}", "confirmed": "yes"})
    assert r.status_code == 200 and "0 changed" in r.text
    assert (await c.service.get(other, theirs)).status == "pending"
    # the operator-only tenant filter is ignored for a tenant
    page = await client.get(f"/console/jobs?tenant={other.id}")
    assert theirs[:16] not in page.text
    assert (await client.get("/console/fleet")).status_code == 403


async def test_a_job_of_several_tasks_shows_its_graph_and_feeds_its_tasks(app_client) -> None:
    c, client = app_client
    tenant, token, simple = await tenant_with_job(c, "graph-http-acme")
    plans = [plan("left"), plan("right"), plan("join", "left", "right")]
    job, _ = await make_graph(c.db, tenant, "http-graph", plans)
    base = f"/console/jobs/{tenant.id}/{job.key}"
    assert (await client.get(f"{base}/tasks")).status_code == 401  # no session
    await sign_in(client, token)
    html = (await client.get(base)).text
    assert html.count('class="task"') == 3
    assert 'waits for <a href="#task-left">left</a>, <a href="#task-right">right</a>' in html
    assert 'needed by <a href="#task-join">join</a>' in html
    feed = (await client.get(f"{base}/tasks")).json()
    assert feed["status"] == "running" and feed["progress"] == 0  # a waiting job, as the API says
    assert [(t["name"], t["status"]) for t in feed["tasks"]] == [
        ("left", "pending"), ("right", "pending"), ("join", "waiting")]
    # a simple job is its own one task, and has no package to play
    one = (await client.get(f"/console/jobs/{tenant.id}/{simple}")).text
    assert "This job runs as one task." in one and 'id="playback"' not in one
    assert (await client.get(f"/console/jobs/{tenant.id}/{simple}/tasks")).json()["tasks"] == []


async def test_label_status_and_key_filters_select_on_both_databases(app_client) -> None:
    c, client = app_client
    tenant, token, news = await tenant_with_job(c, "flt-acme")
    req = EditRequest.model_validate({"source": {"path": "other.mp4"}, "labels": {"team": "sport"}})
    sport = (await c.service.submit(tenant, req)).job.key
    await sign_in(client, token)
    page = (await client.get("/console/jobs?label=team%3Dsport")).text
    assert sport[:16] in page and news[:16] not in page
    page = (await client.get("/console/jobs?status=succeeded")).text
    assert sport[:16] not in page and news[:16] not in page
    page = (await client.get(f"/console/jobs?key={news[:9]}")).text
    assert news[:16] in page and (sport[:9] == news[:9] or sport[:16] not in page)
    page = (await client.get("/console/jobs?since=2999-01-01T00:00")).text
    assert "No job matches" in page


async def test_keyset_pages_cover_every_job_once(app_client) -> None:
    c, client = app_client
    tenant, token, first = await tenant_with_job(c, "pages-acme")
    keys = {first}
    for i in range(54):
        req = EditRequest.model_validate({"source": {"path": "clip.mp4"},
                                          "operations": [{"op": "trim", "start": i, "end": i + 1}]})
        keys.add((await c.service.submit(tenant, req)).job.key)
    await sign_in(client, token)
    page = (await client.get("/console/jobs")).text
    older = page.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert "before=" in older
    second = (await client.get(older)).text
    seen = [t.split("/")[1].split('"')[0] for t in (page + second).split(f'href="/console/jobs/{tenant.id}')[1:]]
    assert len(seen) == 55 and set(seen) == keys
    assert 'rel="next"' not in second


@pytest.mark.parametrize("query", [
    "status=%00", "label=%FF%FE", "since=99999-01-01", "until=2026-13-45T99:99", "key=" + "a" * 500,
    "before=99999999999999999999999", "tenant=%27%20OR%201%3D1", "label=team%3D" + "x" * 400,
    "key=vj1_", "key=vj1_fff", "key=vj2_ab",
])
async def test_hostile_filters_get_a_page_not_a_5xx(app_client, query: str) -> None:
    c, client = app_client
    _, token, _ = await tenant_with_job(c, "hostile-acme")
    await sign_in(client, token)
    r = await client.get(f"/console/jobs?{query}")
    assert r.status_code == 200, r.text[:500]


async def test_operator_sees_every_tenant_and_fleet_and_a_revoked_session_is_gone(app_client) -> None:
    c, client = app_client
    _, _, a = await tenant_with_job(c, "op-acme")
    _, _, g = await tenant_with_job(c, "op-globex")
    async with c.db.transaction() as conn:
        token = await create_operator(conn, "ops")
    csrf = await sign_in(client, token)
    page = await client.get("/console/jobs")
    assert a[:16] in page.text and g[:16] in page.text
    fleet = await client.get("/console/fleet")
    assert fleet.status_code == 200 and "op-acme" in fleet.text and "op-globex" in fleet.text
    r = await client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert (await client.get("/console/jobs", follow_redirects=False)).status_code == 303


async def test_revoking_the_tenant_token_ends_its_console_session(app_client) -> None:
    c, client = app_client
    tenant, token, _ = await tenant_with_job(c, "rev-acme")
    await sign_in(client, token)
    async with c.db.transaction() as conn:
        await revoke_tokens(conn, tenant.id)
    r = await client.get("/console/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = await client.post("/console/login", data={"token": token})
    assert r.status_code == 401


def test_operator_create_prints_a_token_once(tmp_path: Path) -> None:
    env = {"VIDJOBS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "workers.cli", "migrate"], env=env,
                         capture_output=True, text=True, timeout=120)
    made = subprocess.run([sys.executable, "-m", "workers.cli", "operator", "create", "alice"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, (run.stdout, run.stderr, made.stderr)
    assert made.stdout.strip().startswith("vjo_")
    again = subprocess.run([sys.executable, "-m", "workers.cli", "operator", "create", "alice"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr


async def test_an_operator_token_is_stored_only_as_its_hash(db: Database) -> None:
    async with db.transaction() as conn:
        token = await create_operator(conn, "hashy")
        rows = (await conn.exec_driver_sql("SELECT token_hash FROM operators")).all()
    assert rows and all(token not in r[0] for r in rows)
