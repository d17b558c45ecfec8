"""`from_row` builds what `model_construct` builds from a whole row, faster, and takes
`model_construct` for anything that is not exactly the model's fields."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from jobs.models import Job, OutboxEvent, from_row

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)


def job_row() -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in Job.model_fields}
    row.update(
        id=7, tenant_id="t1", key="vj1_ab", status="running", role="job", spec={"inputs": []},
        labels={"a": "b"}, priority=2, attempts=1, max_attempts=3, fencing_token=4,
        cancel_requested=False, progress=0.5, created_at=NOW, updated_at=NOW, run_after=NOW,
    )  # fmt: skip
    return row


def same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    assert a.__dict__ == b.__dict__
    assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__
    assert a.model_dump() == b.model_dump() and a == b


def test_a_whole_row_builds_what_model_construct_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = Job.model_construct(**job_row())

    def refuse(**_: Any) -> Job:
        raise AssertionError("a whole row must not take model_construct")

    monkeypatch.setattr(Job, "model_construct", refuse)
    got = from_row(Job, job_row())
    same(got, expected)
    copy = got.model_copy(update={"status": "succeeded"})
    assert copy.status == "succeeded" and got.status == "running"
    # The row's dict is not kept: changing it later changes nothing in the model.
    row = job_row()
    built = from_row(Job, row)
    row["status"] = "failed"
    assert built.status == "running"


def test_partial_rows_and_extra_columns_take_model_construct() -> None:
    partial = {"id": 1, "tenant_id": "t1", "key": "k", "status": "pending"}
    same(from_row(Job, partial), Job.model_construct(**partial))
    assert from_row(Job, partial).priority == 0  # the default filled in
    extra = {**job_row(), "event.id": 3}
    same(from_row(Job, extra), Job.model_construct(**extra))
    assert "event.id" not in from_row(Job, extra).__dict__


async def test_a_database_row_mapping_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    table = OutboxEvent.__table__  # type: ignore[attr-defined]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.create)
            await conn.execute(
                sa.insert(table).values(
                    event_id="e1", tenant_id="t1", job_id=7, job_key="vj1_ab",
                    type="job.claimed", payload={"owner": "w"}, created_at=NOW,
                )
            )  # fmt: skip
            row = (await conn.execute(sa.select(table))).mappings().one()
    finally:
        await engine.dispose()
    expected = OutboxEvent.model_construct(**row)
    monkeypatch.setattr(OutboxEvent, "model_construct", None)  # any use of it fails
    same(from_row(OutboxEvent, row), expected)
