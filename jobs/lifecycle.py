"""Retention: which stored digests are still referenced, and forgetting those that are not.

A digest is referenced while a pending or running job names it as an input, while a
succeeded job whose output has not expired names it (as its output or an input, so the job
can be re-run on the same bytes), or while an upload of it is younger than the upload
retention. The reaper deletes a digest only when none of that holds, on both backends.

The checks scan `jobs` by status with a text match on the JSON columns (portable across
SQLite and PostgreSQL); they run in the reaper, in small batches, never on a request path.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import statements
from jobs.db import db_now
from jobs.models import Blob, BlobOwner, Upload

jobs = statements.jobs
blobs = Blob.__table__  # type: ignore[attr-defined]
owners = BlobOwner.__table__  # type: ignore[attr-defined]
uploads = Upload.__table__  # type: ignore[attr-defined]


def output_digests(output: object) -> list[str]:
    """Every stored file a job's output names, in order, once each: the single output's
    digest, or a job of several tasks' named outputs, package files and sprites."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                if name == "digest" and isinstance(item, str) and item.startswith("sha256:"):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(output)
    return list(dict.fromkeys(found))


def _mentions(column: sa.ColumnElement[object], digest: str) -> sa.ColumnElement[bool]:
    return sa.cast(column, sa.Text).like(f"%{digest}%")  # digests are sha256:<hex> only


async def is_referenced(conn: AsyncConnection, digest: str, upload_retention_s: float) -> bool:
    j = jobs.c
    live_input = sa.select(j.id).where(
        j.status.in_([statements.PENDING, statements.RUNNING, statements.WAITING]),
        _mentions(j.spec, digest),
    )
    live_output = sa.select(j.id).where(
        j.status == statements.SUCCEEDED,
        sa.not_(statements.output_expired()),
        sa.or_(_mentions(j.output, digest), _mentions(j.spec, digest)),
    )
    upload = sa.select(blobs.c.digest).where(blobs.c.digest == digest)
    if upload_retention_s > 0:
        upload = upload.where(blobs.c.created_at > db_now(-upload_retention_s))
    for query in (upload, live_input, live_output):
        if (await conn.execute(query.limit(1))).first() is not None:
            return True
    return False


async def forget(conn: AsyncConnection, digest: str) -> None:
    """No tenant owns the digest any more, and its upload record goes (before the delete)."""
    await conn.execute(sa.delete(owners).where(owners.c.digest == digest))
    await conn.execute(sa.delete(blobs).where(blobs.c.digest == digest))


async def select_uploads_before(
    conn: AsyncConnection, seconds: float, after: str, limit: int
) -> list[str]:
    """Digests uploaded more than `seconds` ago, in digest order after `after`."""
    stmt = (
        sa.select(blobs.c.digest)
        .where(blobs.c.created_at <= db_now(-seconds), blobs.c.digest > after)
        .order_by(blobs.c.digest)
        .limit(limit)
    )
    return [str(r[0]) for r in (await conn.execute(stmt)).all()]


async def delete_expired_open_uploads(
    conn: AsyncConnection, limit: int
) -> list[tuple[str, str | None]]:
    """Direct uploads never completed before their URL expired: (id, multipart id) each."""
    stale = (
        await conn.execute(
            sa.select(uploads.c.id, uploads.c.multipart_id)
            .where(uploads.c.completed_at.is_(None), uploads.c.expires_at <= db_now())
            .limit(limit)
        )
    ).all()
    ids = [str(r[0]) for r in stale]
    if ids:
        await conn.execute(
            sa.delete(uploads).where(uploads.c.id.in_(ids), uploads.c.completed_at.is_(None))
        )
    return [(str(r[0]), r[1]) for r in stale]
