"""Which bucket prefixes a tenant may read S3 sources from (`vidjobs tenant grant-source`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import insert_on_conflict
from jobs.models import SourceGrant
from jobs.sources import parse_s3_url

grants = SourceGrant.__table__  # type: ignore[attr-defined]


def normalized_prefix(prefix: str) -> str:
    """`s3://bucket/prefix/` checked; a prefix names a folder, so it ends with '/'."""
    bucket, key = parse_s3_url(prefix, prefix=True)
    if key and not key.endswith("/"):
        key += "/"
    return f"s3://{bucket}/{key}"


async def grant_source(conn: AsyncConnection, tenant_id: str, prefix: str) -> str:
    value = normalized_prefix(prefix)
    await conn.execute(
        insert_on_conflict(conn, grants)
        .on_conflict_do_nothing()
        .values(tenant_id=tenant_id, prefix=value)
    )
    return value


async def revoke_source(conn: AsyncConnection, tenant_id: str, prefix: str) -> bool:
    result = await conn.execute(
        sa.delete(grants).where(
            grants.c.tenant_id == tenant_id, grants.c.prefix == normalized_prefix(prefix)
        )
    )
    return bool(result.rowcount)


async def may_read(conn: AsyncConnection, tenant_id: str, bucket: str, key: str) -> bool:
    """True if one of the tenant's grants is a prefix of s3://bucket/key."""
    rows = await conn.execute(
        sa.select(grants.c.prefix).where(
            grants.c.tenant_id == tenant_id, grants.c.prefix.startswith(f"s3://{bucket}/")
        )
    )
    url = f"s3://{bucket}/{key}"
    return any(url.startswith(str(r[0])) for r in rows)
