"""The jobs page's reads: filters from the query string, a keyset page, counts, live rows.

Read-only SQL (what changes a job goes through `JobService`). Pages are newest first by id:
`id < cursor ORDER BY id DESC LIMIT n+1`, served by `ix_jobs_tenant_id` (a tenant, any
status), `ix_jobs_tenant_status_id` (a tenant and a status) or the primary key (operators).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.models import Job, Tenant
from jobs.spec import LABEL_KEY_RE
from jobs.status import JobStatus
from jobs.tenants import TenantRef

jobs = Job.__table__  # type: ignore[attr-defined]
tenants = Tenant.__table__  # type: ignore[attr-defined]
c = jobs.c
PAGE = 50
HEX = "0123456789abcdef"
_KEY_CHARS = set("vj1_" + HEX)


@dataclass(frozen=True)
class JobFilter:
    """What the jobs page shows. `problems` are the fields that were not understood (shown
    to the user beside the form; the rest of the filter still applies)."""

    status: JobStatus | None = None
    label: tuple[str, str] | None = None
    tenant_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    key_prefix: str | None = None
    before: int | None = None
    problems: tuple[str, ...] = field(default=())

    def query(self, *, before: int | None = None) -> str:
        """The query string of this filter (and a page cursor)."""
        q: dict[str, str] = {}
        if self.status:
            q["status"] = self.status.value
        if self.label:
            q["label"] = f"{self.label[0]}={self.label[1]}"
        if self.tenant_id:
            q["tenant"] = self.tenant_id
        if self.since:
            q["since"] = self.since.strftime("%Y-%m-%dT%H:%M")
        if self.until:
            q["until"] = self.until.strftime("%Y-%m-%dT%H:%M")
        if self.key_prefix:
            q["key"] = self.key_prefix
        if before is not None:
            q["before"] = str(before)
        return urlencode(q)


def _time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if not 2000 <= parsed.year <= 2999:
        raise ValueError("out of range")
    return parsed.astimezone(dt.UTC)


def parse_filter(params: Mapping[str, str], *, operator: bool) -> JobFilter:
    """A filter from the query string (or a form). Nothing here raises: what is not
    understood is left out of the filter and named in `problems`."""
    problems: list[str] = []
    f = JobFilter()
    raw = {k: (params.get(k) or "").strip()[:300] for k in
           ("status", "label", "tenant", "since", "until", "key", "before")}
    if raw["status"]:
        try:
            f = replace(f, status=JobStatus(raw["status"]))
        except ValueError:
            problems.append("status: one of " + ", ".join(s.value for s in JobStatus))
    if raw["label"]:
        name, eq, value = raw["label"].partition("=")
        if eq and LABEL_KEY_RE.match(name) and len(value) <= 256:
            f = replace(f, label=(name, value))
        else:
            problems.append("label: name=value, the name 1-63 of a-z, 0-9, '_', '.', '-'")
    if raw["tenant"] and operator:
        if len(raw["tenant"]) <= 36 and raw["tenant"].replace("-", "").isalnum():
            f = replace(f, tenant_id=raw["tenant"])
        else:
            problems.append("tenant: a tenant from the list")
    times: dict[str, dt.datetime | None] = {}
    for name in ("since", "until"):
        if raw[name]:
            try:
                times[name] = _time(raw[name])
            except ValueError:
                problems.append(f"{name}: a date and time (UTC) like 2026-12-01T13:00")
    f = replace(f, since=times.get("since"), until=times.get("until"))
    if raw["key"]:
        if len(raw["key"]) <= 67 and set(raw["key"]) <= _KEY_CHARS:
            f = replace(f, key_prefix=raw["key"])
        else:
            problems.append("key: the start of a job key (vj1_ and hex digits)")
    if raw["before"]:
        if raw["before"].isdigit() and len(raw["before"]) < 19:
            f = replace(f, before=int(raw["before"]))
        else:
            problems.append("before: a page link of this console")
    return replace(f, problems=tuple(problems))


def _where(conn: AsyncConnection, scope: TenantRef | None, f: JobFilter) -> list[Any]:
    where: list[Any] = []
    tenant_id = scope.id if scope is not None else f.tenant_id
    if tenant_id is not None:
        where.append(c.tenant_id == tenant_id)
    elif f.key_prefix is not None:  # every tenant: one range of uq_jobs_tenant_key each
        where.append(c.tenant_id.in_(sa.select(tenants.c.id).scalar_subquery()))
    if f.status is not None:
        where.append(c.status == f.status.value)
    if f.label is not None:
        name, value = f.label
        if conn.dialect.name == "postgresql":
            where.append(sa.type_coerce(c.labels, JSONB()).contains({name: value}))
        else:  # the name is [a-z0-9_.-]: safe inside the quoted JSON path
            where.append(sa.func.json_extract(c.labels, f'$."{name}"') == value)
    if f.since is not None:
        where.append(c.created_at >= f.since)
    if f.until is not None:
        where.append(c.created_at < f.until)
    if f.key_prefix is not None:
        where += _key_prefix(f.key_prefix)
    return where


def _key_prefix(prefix: str) -> list[Any]:
    """A key prefix as a range of `uq_jobs_tenant_key` (LIKE 'x%' reads every row unless the
    column's collation is C) plus the LIKE itself (exact whatever the collation). Keys are
    `vj1_` and 64 lowercase hex digits, so past `vj1_` the next prefix is the last hex digit
    plus one (trailing f's dropped)."""
    if "vj1_".startswith(prefix):
        return []  # every key starts so
    if not prefix.startswith("vj1_"):
        return [sa.false()]
    where: list[Any] = [c.key >= prefix, c.key.like(prefix + "%")]  # key chars: no wildcards
    head = prefix[4:].rstrip("f")
    if head:
        where.append(c.key < "vj1_" + head[:-1] + HEX[HEX.index(head[-1]) + 1])
    return where


LIST_COLUMNS = (c.id, c.tenant_id, c.key, c.status, c.progress, c.attempts, c.max_attempts,
                c.priority, c.labels, c.error_code, c.created_at, c.updated_at,
                c.cancel_requested)


def page_statement(
    conn: AsyncConnection, scope: TenantRef | None, f: JobFilter, limit: int = PAGE
) -> sa.Select[Any]:
    """The keyset query of one page (and one row more: is there a next page?)."""
    where = _where(conn, scope, f)
    if f.before is not None:
        where.append(c.id < f.before)
    return sa.select(*LIST_COLUMNS).where(*where).order_by(c.id.desc()).limit(limit + 1)


async def select_page(
    conn: AsyncConnection, scope: TenantRef | None, f: JobFilter, limit: int = PAGE
) -> tuple[list[sa.Row[Any]], int | None]:
    """One page of matching jobs, newest first, and the cursor of the next page."""
    stmt = page_statement(conn, scope, f, limit)
    # Rows, not dicts: a template reads `row.key` as a tuple field; on a dict Jinja tries
    # getattr first and falls back to an item (10 ms of a 50-row page, measured).
    rows = list(await conn.execute(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def select_matching_keys(
    conn: AsyncConnection, scope: TenantRef | None, f: JobFilter, limit: int
) -> list[tuple[str, str]]:
    """(tenant id, key) of up to `limit` matching jobs, newest first."""
    stmt = (
        sa.select(c.tenant_id, c.key)
        .where(*_where(conn, scope, f))
        .order_by(c.id.desc())
        .limit(limit)
    )
    return [(r[0], r[1]) for r in await conn.execute(stmt)]


async def select_live(
    conn: AsyncConnection, scope: TenantRef | None, ids: list[int]
) -> list[dict[str, Any]]:
    """Status and progress of the listed jobs (the jobs page's live refresh)."""
    if not ids:
        return []
    where = [c.id.in_(ids)]
    if scope is not None:
        where.append(c.tenant_id == scope.id)
    stmt = sa.select(c.id, c.status, c.progress, c.attempts, c.cancel_requested).where(*where)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def tenant_by_id(conn: AsyncConnection, tenant_id: str) -> TenantRef | None:
    row = (
        await conn.execute(
            sa.select(tenants.c.id, tenants.c.name, tenants.c.max_in_flight).where(
                tenants.c.id == tenant_id
            )
        )
    ).first()
    return None if row is None else TenantRef(row[0], row[1], row[2])


async def tenant_names(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(sa.select(tenants.c.id, tenants.c.name).order_by(tenants.c.name))
    return {r[0]: r[1] for r in rows}
