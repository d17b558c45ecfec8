"""Direct uploads' rows (`uploads`): made by POST /v1/uploads, completed once."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now
from jobs.models import Upload

uploads = Upload.__table__  # type: ignore[attr-defined]
c = uploads.c


async def insert_upload(
    conn: AsyncConnection,
    *,
    upload_id: str,
    tenant_id: str,
    size: int,
    media_type: str,
    multipart_id: str | None,
    expires_in: int,
) -> Upload:
    stmt = (
        sa.insert(uploads)
        .values(
            id=upload_id,
            tenant_id=tenant_id,
            size=size,
            media_type=media_type,
            multipart_id=multipart_id,
            expires_at=db_now(expires_in),
        )
        .returning(*c)
    )
    return Upload.model_construct(**(await conn.execute(stmt)).one()._mapping)


async def select_open_upload(
    conn: AsyncConnection, tenant_id: str, upload_id: str
) -> Upload | None:
    """The tenant's upload if it is completed or not yet expired."""
    stmt = sa.select(*c).where(
        c.id == upload_id,
        c.tenant_id == tenant_id,
        sa.or_(c.completed_at.is_not(None), c.expires_at > db_now()),
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else Upload.model_construct(**row._mapping)


async def complete_upload_if_open(conn: AsyncConnection, upload_id: str, digest: str) -> bool:
    stmt = (
        sa.update(uploads)
        .where(c.id == upload_id, c.completed_at.is_(None))
        .values(digest=digest, completed_at=db_now())
    )
    return bool((await conn.execute(stmt)).rowcount)
