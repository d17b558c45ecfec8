"""Tenants and their API tokens. Tokens are random, shown once, and stored as sha256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import fetch_prepared
from jobs.errors import InvalidRequest
from jobs.models import ApiKey, Tenant

tenants = Tenant.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]

TOKEN_PREFIX = "vjt_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class TenantRef:
    id: str
    name: str
    max_in_flight: int | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_tenant(
    conn: AsyncConnection,
    name: str,
    max_in_flight: int | None = None,
    *,
    max_running: int | None = None,
) -> tuple[TenantRef, str]:
    """A new tenant and its first token (the only time the token is visible).

    `max_running`: at most this many of its jobs run at once (None: no cap)."""
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest("a tenant name is 1-100 letters, digits, '-' or '_'")
    existing = (await conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name))).first()
    if existing is not None:
        raise InvalidRequest(f"tenant {name!r} already exists")
    if max_running is not None and max_running < 1:
        raise InvalidRequest("max_running is a whole number of at least 1 (or none: no cap)")
    tenant = TenantRef(id=str(uuid.uuid4()), name=name, max_in_flight=max_in_flight)
    await conn.execute(
        sa.insert(tenants).values(
            id=tenant.id, name=name, max_in_flight=max_in_flight, max_running=max_running
        )
    )
    token = await issue_token(conn, tenant.id)
    return tenant, token


async def issue_token(conn: AsyncConnection, tenant_id: str) -> str:
    token = new_token()
    await conn.execute(
        sa.insert(api_keys).values(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            token_hash=hash_token(token),
            prefix=token[:12],
        )
    )
    return token


_TENANT_BY_API_KEY_SQL = (
    "SELECT tenants.id, tenants.name, tenants.max_in_flight FROM tenants"
    " JOIN api_keys ON api_keys.tenant_id = tenants.id"
    " WHERE api_keys.token_hash = $1 AND api_keys.revoked_at IS NULL"
)


async def tenant_for_token(conn: AsyncConnection, token: str) -> TenantRef | None:
    """The tenant of a live (not revoked) token. On PostgreSQL, outside a transaction (every
    API request), a single prepared statement with no BEGIN/ROLLBACK."""
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        rows = await fetch_prepared(conn, _TENANT_BY_API_KEY_SQL, hash_token(token))
        if not rows:
            return None
        found = rows[0]
        return TenantRef(id=found["id"], name=found["name"], max_in_flight=found["max_in_flight"])
    stmt = (
        sa.select(tenants.c.id, tenants.c.name, tenants.c.max_in_flight)
        .join(api_keys, api_keys.c.tenant_id == tenants.c.id)
        .where(api_keys.c.token_hash == hash_token(token), api_keys.c.revoked_at.is_(None))
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else TenantRef(id=row[0], name=row[1], max_in_flight=row[2])


async def tenant_by_name(conn: AsyncConnection, name: str) -> TenantRef | None:
    stmt = sa.select(tenants.c.id, tenants.c.name, tenants.c.max_in_flight).where(
        tenants.c.name == name
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else TenantRef(id=row[0], name=row[1], max_in_flight=row[2])


@dataclass(frozen=True)
class TenantSummary:
    id: str
    name: str
    max_in_flight: int | None
    max_running: int | None
    live_tokens: int


async def list_tenants(conn: AsyncConnection) -> list[TenantSummary]:
    """Every tenant by name, with how many of its tokens are live (not revoked)."""
    live = sa.func.count(api_keys.c.id).filter(api_keys.c.revoked_at.is_(None))
    stmt = (
        sa.select(tenants.c.id, tenants.c.name, tenants.c.max_in_flight, tenants.c.max_running,
                  live)
        .select_from(tenants.outerjoin(api_keys, api_keys.c.tenant_id == tenants.c.id))
        .group_by(tenants.c.id, tenants.c.name, tenants.c.max_in_flight, tenants.c.max_running)
        .order_by(tenants.c.name)
    )
    return [TenantSummary(r[0], r[1], r[2], r[3], int(r[4])) for r in await conn.execute(stmt)]


async def revoke_tokens(conn: AsyncConnection, tenant_id: str) -> int:
    """Revoke every live token of a tenant (refused from the next request on)."""
    result = await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    return int(result.rowcount)
