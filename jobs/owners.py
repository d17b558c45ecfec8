"""Which tenants may use a stored digest (`blob_owners`): uploaders, importers, producers."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import insert_on_conflict
from jobs.models import BlobOwner

owners = BlobOwner.__table__  # type: ignore[attr-defined]


async def record_owner(conn: AsyncConnection, tenant_id: str, digest: str) -> None:
    """Make `tenant_id` an owner of `digest` (again is a no-op)."""
    await conn.execute(
        insert_on_conflict(conn, owners)
        .on_conflict_do_nothing()
        .values(tenant_id=tenant_id, digest=digest)
    )


async def owns(conn: AsyncConnection, tenant_id: str, digest: str) -> bool:
    row = await conn.execute(
        sa.select(owners.c.digest).where(owners.c.tenant_id == tenant_id, owners.c.digest == digest)
    )
    return row.first() is not None
