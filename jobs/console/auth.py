"""Console sign-in: operator tokens, sessions (an HttpOnly SameSite cookie) and CSRF.

A tenant token (`vjt_...`, `vidjobs tenant create`) signs in as that tenant: the console
shows its jobs only. An operator token (`vjo_...`, `vidjobs operator create NAME`) sees
every tenant and the fleet page. The cookie carries a random session token; the database
keeps its sha256, who it is, and the CSRF token every form and action must send back.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import Database, db_now
from jobs.errors import InvalidRequest
from jobs.models import ApiKey, ConsoleSession, Operator, Tenant
from jobs.tenants import TenantRef, hash_token

operators = Operator.__table__  # type: ignore[attr-defined]
sessions = ConsoleSession.__table__  # type: ignore[attr-defined]
tenants = Tenant.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]

OPERATOR_PREFIX = "vjo_"
COOKIE = "vidjobs_console"
SESSION_HOURS = 12


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a tenant (its jobs only) or an operator (every tenant, the fleet)."""

    tenant: TenantRef | None
    operator: str | None
    csrf: str

    @property
    def is_operator(self) -> bool:
        return self.operator is not None

    @property
    def name(self) -> str:
        if self.operator is not None:
            return f"operator {self.operator}"
        assert self.tenant is not None
        return self.tenant.name


async def create_operator(conn: AsyncConnection, name: str) -> str:
    """A new operator and its token (the only time the token is visible)."""
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest("an operator name is 1-100 letters, digits, '-' or '_'")
    found = await conn.execute(sa.select(operators.c.id).where(operators.c.name == name))
    if found.first() is not None:
        raise InvalidRequest(f"operator {name!r} already exists")
    token = OPERATOR_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        sa.insert(operators).values(id=str(uuid.uuid4()), name=name, token_hash=hash_token(token))
    )
    return token


def _plausible(token: str) -> bool:
    return 0 < len(token) <= 200 and token.isascii() and token.isprintable()


async def sign_in(db: Database, token: str) -> tuple[str, Viewer] | None:
    """A new session for a live tenant or operator token: (cookie value, viewer)."""
    token = token.strip()
    if not _plausible(token):
        return None
    tenant: TenantRef | None = None
    key_id: str | None = None
    operator: tuple[str, str] | None = None
    async with db.transaction() as conn:
        if token.startswith(OPERATOR_PREFIX):
            row = (
                await conn.execute(
                    sa.select(operators.c.id, operators.c.name).where(
                        operators.c.token_hash == hash_token(token),
                        operators.c.revoked_at.is_(None),
                    )
                )
            ).first()
            operator = None if row is None else (row[0], row[1])
        else:
            found = (
                await conn.execute(
                    sa.select(api_keys.c.id, tenants.c.id, tenants.c.name,
                              tenants.c.max_in_flight)
                    .join(tenants, tenants.c.id == api_keys.c.tenant_id)
                    .where(api_keys.c.token_hash == hash_token(token),
                           api_keys.c.revoked_at.is_(None))
                )
            ).first()
            if found is not None:
                key_id, tenant = found[0], TenantRef(found[1], found[2], found[3])
        if tenant is None and operator is None:
            return None
        await conn.execute(sa.delete(sessions).where(sessions.c.expires_at <= db_now()))
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await conn.execute(
            sa.insert(sessions).values(
                token_hash=hash_token(cookie),
                tenant_id=None if tenant is None else tenant.id,
                api_key_id=key_id,
                operator_id=None if operator is None else operator[0],
                csrf=csrf,
                expires_at=db_now(SESSION_HOURS * 3600),
            )
        )
    return cookie, Viewer(tenant, None if operator is None else operator[1], csrf)


async def viewer(request: Request, db: Database) -> Viewer | None:
    """The signed-in viewer of this request, or None: no, unknown or expired session, or
    the token it signed in with was revoked since (`vidjobs tenant revoke`)."""
    cookie = request.cookies.get(COOKIE, "")
    if not _plausible(cookie):
        return None
    stmt = (
        sa.select(
            sessions.c.csrf, sessions.c.tenant_id, tenants.c.name, tenants.c.max_in_flight,
            api_keys.c.revoked_at, operators.c.name, operators.c.revoked_at,
        )
        .select_from(
            sessions.outerjoin(tenants, tenants.c.id == sessions.c.tenant_id)
            .outerjoin(api_keys, api_keys.c.id == sessions.c.api_key_id)
            .outerjoin(operators, operators.c.id == sessions.c.operator_id)
        )
        .where(sessions.c.token_hash == hash_token(cookie), sessions.c.expires_at > db_now())
    )
    async with db.reader.connect() as conn:
        row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    csrf, tenant_id, tenant_name, max_in_flight, key_revoked, operator_name, revoked = row
    if tenant_id is not None and tenant_name is not None:
        if key_revoked is not None:
            return None
        return Viewer(TenantRef(tenant_id, tenant_name, max_in_flight), None, csrf)
    if operator_name is not None and revoked is None:
        return Viewer(None, operator_name, csrf)
    return None


async def sign_out(request: Request, db: Database) -> None:
    cookie = request.cookies.get(COOKIE, "")
    if _plausible(cookie):
        async with db.transaction() as conn:
            gone = sessions.c.token_hash == hash_token(cookie)
            await conn.execute(sa.delete(sessions).where(gone))


def csrf_ok(viewer: Viewer, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), viewer.csrf.encode())


def same_origin(request: Request) -> bool:
    """A browser's Origin (when it sends one) names this host: no cross-site form posts."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
