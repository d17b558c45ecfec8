"""One contract, two drivers: the same worker cycle on SQLite (SQLAlchemy statements) and on
PostgreSQL (the named texts in `jobs.pgsql`) leaves the same jobs and the same outbox rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobs import fenced, outcomes, statements
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.outbox import outbox
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import create_tenant
from tests.support.databases import PgTemplates, SqliteTemplate

VOLATILE = {"id", "key", "tenant_id", "run_after", "lease_owner", "lease_expires_at", "created_at",
            "updated_at", "started_at", "finished_at", "spec"}  # fmt: skip
SKIP = {"job_id", "tenant_id", "key"}  # payload fields that differ by construction


async def one_cycle_each_kind(url: str, settings: Settings) -> tuple[list[Any], list[Any]]:
    """Claim six jobs, end them with every outcome kind (and a zombie), claim two more:
    the jobs as stored (in submission order) and the outbox rows (type and payload, by job).

    Also checks that what the cycle returned is what it stored: each recorded and claimed
    job column for column, each event's type and payload (PostgreSQL rebuilds them from
    what the worker knows and the columns the statement sent back)."""
    db = Database(url)
    try:
        async with db.transaction() as conn:
            tenant, _ = await create_tenant(conn, "acme")
        service = JobService(db, settings)
        for i in range(8):
            req = {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": i, "end": i + 1}],
            }
            await service.submit(
                tenant, EditRequest.model_validate({**req, "max_attempts": 2 if i == 2 else 3})
            )
        claims = ClaimService(db, settings)
        held = sorted(await claims.claim_batch("w", 6), key=lambda j: j.id or 0)
        for job in held:  # progress under way: which outcomes keep it and which reset it
            await claims.heartbeat(job, 0.5)
        zombie = held[5].model_copy(update={"fencing_token": held[5].fencing_token - 1})
        ended = [
            outcomes.succeeded(held[0], {"digest": "sha256:" + "a" * 64, "size": 3}),
            outcomes.failed(held[1], "io", "disk hiccup", retryable=True, delay=60),
            outcomes.failed(held[2], "bad", "cannot decode", retryable=False),
            outcomes.cancelled(held[3]),
            outcomes.released(held[4]),
            outcomes.succeeded(zombie, {"zombie": True}),
        ]
        async with db.single_statement() as conn:
            recorded, claimed = await fenced.record_outcomes_and_claim_due(conn, ended, "w", 30.0, 2)
        assert len(recorded) == 5 and len(claimed) == 2  # the zombie changed nothing
        async with db.engine.connect() as conn:
            rows = (await conn.execute(sa.select(statements.jobs).order_by(statements.c.id))).all()
            by_id = {row.id: dict(row._mapping) for row in rows}
            for job, _ in recorded + claimed:
                assert job.model_dump() == by_id[job.id], f"job {job.id} as returned"
            written = {
                r.event_id: r for r in (await conn.execute(sa.select(outbox))).all()
            }
            for _, event in recorded + claimed:
                row = written[event.event_id]
                assert (event.id, event.type, event.payload) == (row.id, row.type, row.payload)
            place = {row.id: n for n, row in enumerate(rows)}  # the n-th job submitted
            stored = [{k: v for k, v in row._mapping.items() if k not in VOLATILE} for row in rows]
            changes = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
            events = sorted(
                (place[r.job_id], r.type, {k: v for k, v in r.payload.items() if k not in SKIP})
                for r in changes
            )
        return stored, events
    finally:
        await db.dispose()


@pytest.fixture
def both(
    sqlite_template: SqliteTemplate, pg_templates: PgTemplates, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """A fresh migrated database on each driver (the template copies are synchronous)."""
    pg_url = pg_templates.new_database()
    yield sqlite_template.new_database(tmp_path), pg_url
    pg_templates.drop(pg_url)


async def test_sqlite_and_postgresql_leave_the_same_rows(
    both: tuple[str, str], settings: Settings
) -> None:
    lite = await one_cycle_each_kind(both[0], settings)
    pg = await one_cycle_each_kind(both[1], settings)
    assert lite[0] == pg[0]  # jobs: status, attempts, tokens, outputs, errors, progress
    assert lite[1] == pg[1]  # outbox: one row per change, same types and payloads
    statuses = sorted(row["status"] for row in pg[0])
    assert statuses == ["cancelled", "failed", "pending", "pending", "running", "running",
                        "running", "succeeded"]  # fmt: skip
