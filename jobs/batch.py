"""Batch submission: up to `MAX_BATCH` edits in one request, answered item by item.

Each item is validated and submitted on its own (`JobService.submit`, its own transaction),
so one invalid item fails only itself. Items in the order given: a duplicate of an earlier
item of the same batch finds that item's job and is answered with it (200, or 409 when the
client rejects duplicates). With an `Idempotency-Key`, the whole answer is stored with the
request's hash and replayed for the same key and body (a different body is a 422).
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
from jobs.service import JobService, OnDuplicate, check_idempotency_key
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
    """Validate and submit each item in order. `describe` turns a pydantic error list into
    the API's error details (paths are given relative to `jobs[i]`)."""
    results: list[ItemResult] = []
    for i, raw in enumerate(items):
        try:
            req = EditRequest.model_validate(raw)
        except ValidationError as exc:
            details = describe(list(exc.errors()))
            for d in details:
                d["path"] = f"jobs[{i}]" + ("" if d["path"] == "$" else f".{d['path']}")
            error = {
                "code": "invalid_request",
                "message": "the item is invalid",
                "details": details,
            }
            results.append(ItemResult(422, error=error))
            continue
        try:
            result = await service.submit(tenant, req, on_duplicate=on_duplicate)
        except VidjobsError as exc:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            results.append(ItemResult(exc.http_status, error=error))
            continue
        results.append(ItemResult(200 if result.replayed else 201, job=result.job))
    return results


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
