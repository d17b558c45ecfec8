"""Batch submission: up to `MAX_BATCH` edits in one request, answered item by item.

Every item is validated, resolved and checked on its own, so one invalid item fails only
itself; then the new runs are stored together, in one transaction (`JobService.submit_many`:
one multi-row INSERT of the jobs, one of their outbox rows, one wake-up). Items keep their
order (and new jobs their ids in it): a duplicate of an earlier item of the same batch is
answered with that item's job (200, or 409 when the client rejects duplicates) or, if that
item was refused, with the same error. With an `Idempotency-Key`, the whole answer is
stored with the request's hash and replayed for the same key and body (a different body is
a 422).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from jobs.db import db_now, insert_on_conflict
from jobs.errors import IdempotencyKeyReused, InvalidRequest, VidjobsError
from jobs.models import BatchAnswer, Job
from jobs.service import (
    JobService,
    OnDuplicate,
    PreparedEdit,
    check_idempotency_key,
    duplicate_of,
)
from jobs.spec import EditRequest
from jobs.tenants import TenantRef

MAX_BATCH = 1000
answers = BatchAnswer.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ItemResult:
    """One item's answer: an HTTP status and the job, or the error it met."""

    status: int
    job: Job | None = None
    error: dict[str, Any] | None = None


def check_items(items: Any) -> list[Any]:
    """The batch's list of edits, or a clear error saying what is allowed."""
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        got = f"{len(items)} items" if isinstance(items, list) else type(items).__name__
        raise InvalidRequest(
            f"jobs must be a list of 1 to {MAX_BATCH} edit requests (got {got})",
            details=[{"path": "jobs", "message": "wrong size or type",
                      "allowed": f"1..{MAX_BATCH} edit requests"}],
        )  # fmt: skip
    return items


async def submit_items(
    service: JobService,
    tenant: TenantRef,
    items: list[Any],
    *,
    on_duplicate: OnDuplicate,
    describe: Any,
) -> list[ItemResult]:
    """Validate and prepare every item, then submit the distinct keys together
    (`JobService.submit_many`). `describe` turns a pydantic error list into the API's error
    details (paths are given relative to `jobs[i]`)."""
    results: list[ItemResult | None] = [None] * len(items)
    first: dict[str, int] = {}  # key -> the first item with it
    later: list[tuple[int, int]] = []  # (item, the earlier item of the same key)
    todo: list[tuple[int, EditRequest, PreparedEdit]] = []
    for i, raw in enumerate(items):
        try:
            req = EditRequest.model_validate(raw)
        except ValidationError as exc:
            results[i] = ItemResult(422, error=_invalid(i, describe(list(exc.errors()))))
            continue
        try:
            prepared = await service.prepare(tenant, req)
        except VidjobsError as exc:
            results[i] = _failed(exc)
            continue
        if prepared.key in first:
            later.append((i, first[prepared.key]))
            continue
        first[prepared.key] = i
        todo.append((i, req, prepared))
    answers = await service.submit_many(
        tenant, [(req, prepared) for _, req, prepared in todo], on_duplicate=on_duplicate
    )
    for (i, _, _), answer in zip(todo, answers, strict=True):
        if isinstance(answer, VidjobsError):
            results[i] = _failed(answer)
        else:
            results[i] = ItemResult(200 if answer.replayed else 201, job=answer.job)
    for i, earlier in later:  # answered with the first item's job, now a duplicate of it
        got = results[earlier]
        assert got is not None
        if got.job is None:
            results[i] = got
        elif on_duplicate is OnDuplicate.REJECT:
            results[i] = _failed(duplicate_of(got.job))
        else:
            results[i] = ItemResult(200, job=got.job)
    return [r for r in results if r is not None]


def _invalid(i: int, details: list[dict[str, Any]]) -> dict[str, Any]:
    for d in details:
        d["path"] = f"jobs[{i}]" + ("" if d["path"] == "$" else f".{d['path']}")
    return {"code": "invalid_request", "message": "the item is invalid", "details": details}


def _failed(exc: VidjobsError) -> ItemResult:
    error = {"code": exc.code, "message": exc.message, "details": exc.details}
    return ItemResult(exc.http_status, error=error)


def request_hash(items: list[Any], on_duplicate: OnDuplicate) -> str:
    body = {"jobs": items, "on_duplicate": on_duplicate.value}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def stored_answer(
    service: JobService, tenant: TenantRef, client_key: str, digest: str
) -> dict[str, Any] | None:
    """The answer an unexpired `Idempotency-Key` already got, or None."""
    check_idempotency_key(client_key)
    async with service.db.transaction() as conn:
        row = (
            await conn.execute(
                sa.select(answers.c.request_hash, answers.c.answer).where(
                    answers.c.tenant_id == tenant.id,
                    answers.c.client_key == client_key,
                    answers.c.expires_at > db_now(),
                )
            )
        ).first()
    if row is None:
        return None
    if row[0] != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different batch",
            details={"idempotency_key": client_key},
        )
    answer: dict[str, Any] = json.loads(row[1])
    return answer


async def store_answer(
    service: JobService, tenant: TenantRef, client_key: str, digest: str, answer: dict[str, Any]
) -> dict[str, Any]:
    """Keep the answer for the key's lifetime; if a concurrent request stored one first,
    that one is the answer."""
    hours = service.settings.idempotency_key_hours
    async with service.db.transaction() as conn:
        await conn.execute(
            sa.delete(answers).where(
                answers.c.tenant_id == tenant.id,
                answers.c.client_key == client_key,
                answers.c.expires_at <= db_now(),
            )
        )
        stmt = (
            insert_on_conflict(conn, answers)
            .values(
                tenant_id=tenant.id,
                client_key=client_key,
                request_hash=digest,
                answer=json.dumps(answer),
                expires_at=db_now(hours * 3600),
            )
            .on_conflict_do_nothing()
        )
        if (await conn.execute(stmt)).rowcount:
            return answer
    stored = await stored_answer(service, tenant, client_key, digest)
    return stored if stored is not None else answer
