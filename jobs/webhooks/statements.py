"""Every webhook statement, by name (the expected state is in the WHERE clause and the name).

Deliveries are claimed like jobs: one conditional UPDATE of due pending rows (`FOR UPDATE
SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises claimers) that bumps the
attempt number and pushes `next_attempt_at` past the attempt's timeout. The attempt number
is the fence: an outcome is recorded only `..._if_current`, so a dispatcher that lost its
claim (paused past the lease, the delivery claimed again) records nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now
from jobs.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
e = endpoints.c
d = deliveries.c

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
_PENDING_LITERAL: sa.ColumnElement[str] = sa.literal_column("'pending'")


def _endpoint(row: Any) -> WebhookEndpoint | None:
    return None if row is None else WebhookEndpoint.model_construct(**row)


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery.model_construct(**row)


# --- endpoints ------------------------------------------------------------------------------


async def insert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> WebhookEndpoint:
    stmt = (
        sa.insert(endpoints)
        .values(**values, created_at=db_now(), updated_at=db_now())
        .returning(*endpoints.c)
    )
    row = _endpoint((await conn.execute(stmt)).mappings().one())
    assert row is not None
    return row


async def select_endpoint(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint | None:
    stmt = sa.select(endpoints).where(e.tenant_id == tenant_id, e.id == endpoint_id)
    return _endpoint((await conn.execute(stmt)).mappings().one_or_none())


async def select_endpoints_of_tenant(
    conn: AsyncConnection, tenant_id: str, limit: int = 500
) -> list[WebhookEndpoint]:
    stmt = (
        sa.select(endpoints)
        .where(e.tenant_id == tenant_id)
        .order_by(e.created_at, e.id)
        .limit(limit)
    )
    return [WebhookEndpoint.model_construct(**r) for r in (await conn.execute(stmt)).mappings()]


async def select_enabled_endpoints_for_event(
    conn: AsyncConnection, tenant_id: str, event_type: str
) -> list[WebhookEndpoint]:
    """The tenant's enabled endpoints subscribed to `event_type` (or to every event, "*")."""
    stmt = sa.select(endpoints).where(e.tenant_id == tenant_id, e.enabled.is_(True))
    rows = [WebhookEndpoint.model_construct(**r) for r in (await conn.execute(stmt)).mappings()]
    return [r for r in rows if "*" in r.events or event_type in r.events]


async def select_enabled_subscriptions(
    conn: AsyncConnection, tenant_ids: set[str]
) -> dict[str, set[str]]:
    """For each of these tenants, the event types its enabled endpoints subscribe to."""
    if not tenant_ids:
        return {}
    stmt = sa.select(e.tenant_id, e.events).where(
        e.tenant_id.in_(sorted(tenant_ids)), e.enabled.is_(True)
    )
    out: dict[str, set[str]] = {}
    for tenant_id, events in (await conn.execute(stmt)).all():
        out.setdefault(tenant_id, set()).update(events)
    return out


async def update_endpoint(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str, values: dict[str, Any]
) -> WebhookEndpoint | None:
    stmt = (
        sa.update(endpoints)
        .where(e.tenant_id == tenant_id, e.id == endpoint_id)
        .values(**values, updated_at=db_now())
        .returning(*endpoints.c)
    )
    return _endpoint((await conn.execute(stmt)).mappings().one_or_none())


async def rotate_endpoint_secret(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str, secret: str, grace_seconds: float
) -> WebhookEndpoint | None:
    """The current secret becomes the previous one (still signing for `grace_seconds`)."""
    stmt = (
        sa.update(endpoints)
        .where(e.tenant_id == tenant_id, e.id == endpoint_id)
        .values(
            previous_secret=e.secret,
            previous_secret_expires_at=db_now(sa.bindparam("grace", grace_seconds, sa.Float)),
            secret=secret,
            updated_at=db_now(),
        )
        .returning(*endpoints.c)
    )
    return _endpoint((await conn.execute(stmt)).mappings().one_or_none())


async def delete_endpoint_and_deliveries(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str
) -> bool:
    """Delete an endpoint with its deliveries and their attempts; False if it is not there."""
    owned = sa.select(d.id).where(d.endpoint_id == endpoint_id, d.tenant_id == tenant_id)
    await conn.execute(sa.delete(attempts).where(attempts.c.delivery_id.in_(owned)))
    await conn.execute(
        sa.delete(deliveries).where(d.endpoint_id == endpoint_id, d.tenant_id == tenant_id)
    )
    stmt = sa.delete(endpoints).where(e.tenant_id == tenant_id, e.id == endpoint_id)
    return bool((await conn.execute(stmt)).rowcount)


async def clear_endpoint_failing(conn: AsyncConnection, endpoint_id: str) -> None:
    """A success: the endpoint is no longer failing (a no-op write avoided when it was not)."""
    stmt = (
        sa.update(endpoints)
        .where(e.id == endpoint_id, e.failing_since.is_not(None))
        .values(failing_since=None, updated_at=db_now())
    )
    await conn.execute(stmt)


async def mark_endpoint_failing(conn: AsyncConnection, endpoint_id: str) -> float | None:
    """A failed attempt: `failing_since` set if unset; returns how long it has been failing."""
    stmt = (
        sa.update(endpoints)
        .where(e.id == endpoint_id)
        .values(failing_since=sa.func.coalesce(e.failing_since, db_now()))
        .returning(e.failing_since, db_now())
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        return None
    since, now = row
    return max(0.0, float((now - since).total_seconds()))


async def disable_endpoint_if_enabled(
    conn: AsyncConnection, endpoint_id: str, reason: str
) -> WebhookEndpoint | None:
    stmt = (
        sa.update(endpoints)
        .where(e.id == endpoint_id, e.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:500], updated_at=db_now())
        .returning(*endpoints.c)
    )
    return _endpoint((await conn.execute(stmt)).mappings().one_or_none())


# --- deliveries -----------------------------------------------------------------------------


async def insert_deliveries(
    conn: AsyncConnection, rows: Sequence[dict[str, Any]]
) -> list[WebhookDelivery]:
    """Owed deliveries, due at once. Each row: endpoint_id, tenant_id, event_id, event_type,
    body and optionally replay_of."""
    if not rows:
        return []
    values = [
        {
            "replay_of": None,
            **row,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": db_now(),
            "created_at": db_now(),
            "updated_at": db_now(),
        }
        for row in rows
    ]
    stmt = sa.insert(deliveries).values(values).returning(*deliveries.c)
    return [_delivery(r) for r in (await conn.execute(stmt)).mappings()]


async def claim_due_deliveries(
    conn: AsyncConnection, limit: int, lease_seconds: float
) -> list[WebhookDelivery]:
    """pending and due -> attempt n+1 in flight until `lease_seconds` from now (database clock).

    Only deliveries of enabled endpoints are claimed; a disabled endpoint's stay owed.
    """
    # An alias: the same table inside the UPDATE would otherwise be correlated with the
    # outer row, and the LIMIT would apply per row instead of to the claim.
    inner = deliveries.alias("due")
    enabled = sa.select(e.id).where(e.id == inner.c.endpoint_id, e.enabled.is_(True)).exists()
    due = (
        sa.select(inner.c.id)
        .where(inner.c.status == _PENDING_LITERAL, inner.c.next_attempt_at <= db_now(), enabled)
        .order_by(inner.c.next_attempt_at)
        .limit(limit)
    )
    picked: sa.ColumnElement[bool]
    if conn.dialect.name == "postgresql":
        # A materialised CTE: as `id IN (subquery)` PostgreSQL may rescan the locking
        # subquery per row and update more rows than the LIMIT (measured: all of them).
        cte = due.with_for_update(of=inner, skip_locked=True).cte("due_ids")
        cte = cte.prefix_with("MATERIALIZED")
        picked = d.id == cte.c.id
    else:
        picked = d.id.in_(due.scalar_subquery())
    stmt = (
        sa.update(deliveries)
        .where(picked, d.status == PENDING, d.next_attempt_at <= db_now())
        .values(
            attempts=d.attempts + 1,
            next_attempt_at=db_now(sa.bindparam("lease_s", lease_seconds, sa.Float)),
            updated_at=db_now(),
        )
        .returning(*deliveries.c)
    )
    return sorted(
        (_delivery(r) for r in (await conn.execute(stmt)).mappings()), key=lambda x: x.id or 0
    )


async def select_endpoints_by_ids(
    conn: AsyncConnection, ids: Sequence[str]
) -> dict[str, WebhookEndpoint]:
    if not ids:
        return {}
    stmt = sa.select(endpoints, db_now().label("db_now")).where(e.id.in_(set(ids)))
    out: dict[str, WebhookEndpoint] = {}
    for row in (await conn.execute(stmt)).mappings():
        values = dict(row)
        now = values.pop("db_now")
        expires = values["previous_secret_expires_at"]
        if expires is not None and expires <= now:
            values["previous_secret"] = None  # the grace period is over: only the new one signs
        out[values["id"]] = WebhookEndpoint.model_construct(**values)
    return out


async def finish_attempt_if_current(
    conn: AsyncConnection,
    delivery_id: int,
    attempt: int,
    *,
    status: str,
    retry_in: float | None,
    status_code: int | None,
    error: str | None,
    started_at: dt.datetime,
    duration_ms: int,
    outcome: str,
) -> bool:
    """Record attempt `attempt`'s outcome and the delivery's next state, if it is still ours.

    status pending: retry after `retry_in` seconds; succeeded/failed: finished.
    """
    values: dict[str, Any] = {
        "status": status,
        "last_status_code": status_code,
        "last_error": None if error is None else error[:500],
        "updated_at": db_now(),
    }
    if status == PENDING:
        values["next_attempt_at"] = db_now(sa.bindparam("retry_s", retry_in or 0.0, sa.Float))
    else:
        values["finished_at"] = db_now()
    stmt = (
        sa.update(deliveries)
        .where(d.id == delivery_id, d.attempts == attempt, d.status == PENDING)
        .values(**values)
    )
    if not (await conn.execute(stmt)).rowcount:
        return False
    await conn.execute(
        sa.insert(attempts).values(
            delivery_id=delivery_id,
            attempt=attempt,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=None if error is None else error[:500],
            outcome=outcome,
        )
    )
    return True


async def select_delivery(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str, delivery_id: int
) -> WebhookDelivery | None:
    stmt = sa.select(deliveries).where(
        d.id == delivery_id, d.endpoint_id == endpoint_id, d.tenant_id == tenant_id
    )
    row = (await conn.execute(stmt)).mappings().one_or_none()
    return None if row is None else _delivery(row)


async def select_deliveries_page(
    conn: AsyncConnection, tenant_id: str, endpoint_id: str, before: int | None, limit: int
) -> list[WebhookDelivery]:
    """An endpoint's deliveries, newest first (keyset on id)."""
    stmt = sa.select(deliveries).where(d.endpoint_id == endpoint_id, d.tenant_id == tenant_id)
    if before is not None:
        stmt = stmt.where(d.id < before)
    stmt = stmt.order_by(d.id.desc()).limit(limit)
    return [_delivery(r) for r in (await conn.execute(stmt)).mappings()]


async def select_attempts(
    conn: AsyncConnection, delivery_ids: Sequence[int]
) -> dict[int, list[WebhookAttempt]]:
    if not delivery_ids:
        return {}
    stmt = (
        sa.select(attempts)
        .where(attempts.c.delivery_id.in_(list(delivery_ids)))
        .order_by(attempts.c.delivery_id, attempts.c.attempt)
    )
    out: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    for row in (await conn.execute(stmt)).mappings():
        out[row["delivery_id"]].append(WebhookAttempt.model_construct(**row))
    return out


async def select_owed(conn: AsyncConnection) -> tuple[int, float]:
    """Pending deliveries and the age in seconds of the oldest (0 when none are owed)."""
    stmt = sa.select(sa.func.count(), sa.func.min(d.created_at), db_now()).where(
        d.status == _PENDING_LITERAL
    )
    count, oldest, now = (await conn.execute(stmt)).one()
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return int(count), age
