"""The job service: submit, look up, list, cancel and retry. It owns the transactions.

Every state change and its outbox row are written in one transaction. Duplicates are a
typed result, not an error: `submit` returns whether it created the row.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import grants, outbox, owners, statements, tasks
from jobs.canonical import canonical_edit
from jobs.db import Database, db_now, insert_on_conflict
from jobs.errors import (
    DuplicateJob,
    IdempotencyKeyReused,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    SourceNotFound,
    TooManyRequests,
    VidjobsError,
)
from jobs.keys import DigestCache, canonical_json, job_key, resolve_source_path
from jobs.models import Blob, IdempotencyKey, Job, OutboxEvent
from jobs.settings import Settings
from jobs.sources import Source, parse_s3_url
from jobs.spec import EditRequest
from jobs.status import EventType, JobStatus
from jobs.storage import open_s3_sources
from jobs.tasks import chunkplan, graph
from jobs.tasks import statements as task_statements
from jobs.tenants import TenantRef
from jobs.tracecontext import current_traceparent, traced

if TYPE_CHECKING:
    from jobs.storage.s3_sources import S3Sources

idem = IdempotencyKey.__table__  # type: ignore[attr-defined]

AfterCommit = Callable[[Sequence[outbox.Event]], None]
EditCheck = Callable[[EditRequest], None]
# Preflight of one path source before a new job is stored: (JSON path, file, image allowed).
# Raises InvalidRequest naming the JSON path when the file is not an acceptable input;
# returns the file's probe summary (or None).
SourceCheck = Callable[[str, Path, bool], Awaitable[dict[str, Any] | None]]
# The edit against its sources' probe summaries by JSON path (None: not known): raises
# InvalidRequest naming the operation or source the edit cannot work with.
PlanCheck = Callable[[EditRequest, dict[str, dict[str, Any] | None]], None]


class OnDuplicate(StrEnum):
    RETURN_EXISTING = "return_existing"
    REJECT = "reject"


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    created: bool  # a new row was inserted
    rerun: bool = False  # a failed or cancelled key was queued again on its row

    @property
    def replayed(self) -> bool:
        """True when the answer is an existing job that this request did not (re)start."""
        return not (self.created or self.rerun)


def _submit_attributes(result: SubmitResult) -> dict[str, str | bool]:
    """The submit span's attributes: which job the request was answered with."""
    return {
        "vidjobs.job_key": result.job.key,
        "vidjobs.tenant": result.job.tenant_id,
        "vidjobs.created": result.created or result.rerun,
    }


def _batch_attributes(results: Sequence[SubmitResult | Exception]) -> dict[str, int]:
    """The batch span's attributes: how many items, how many started a run."""
    started = sum(1 for r in results if isinstance(r, SubmitResult) and not r.replayed)
    return {"vidjobs.items": len(results), "vidjobs.created": started}


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class PreparedEdit:
    """An edit request with its sources resolved: what gets stored, and its key."""

    key: str
    spec: dict[str, Any]
    request_hash: str
    # (JSON path, local path or None for a blob, may it be an image) of each input
    checks: tuple[tuple[str, Path | None, bool], ...] = ()


class JobService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        digests: DigestCache | None = None,
        after_commit: AfterCommit | None = None,
        check_edit: EditCheck | None = None,
        check_source: SourceCheck | None = None,
        check_plan: PlanCheck | None = None,
        s3_sources: S3Sources | None = None,
    ) -> None:
        self.db = db
        self._s3_sources = s3_sources
        self.settings = settings
        self.digests = digests or DigestCache()
        self.after_commit = after_commit
        self.check_edit = check_edit
        self.check_source = check_source
        self.check_plan = check_plan
        self.source_roots = settings.resolved_source_roots
        self._in_flight: dict[str, tuple[int, float]] = {}  # tenant -> (estimate, read at)

    # --- submission ------------------------------------------------------------------

    async def prepare(self, tenant: TenantRef, req: EditRequest) -> PreparedEdit:
        """Resolve every source to its content digest and derive the job key."""
        if self.check_edit is not None:
            self.check_edit(req)
        inputs: list[dict[str, Any]] = []
        checks: list[tuple[str, Path | None, bool]] = []
        for ref in req.inputs():
            resolved = await self._resolve(tenant, ref.source, ref.path)
            inputs.append(resolved)
            # A subtitle file is parsed text: the worker reads it strictly, never probes it.
            local = Path(resolved["path"]) if resolved["path"] and ref.is_media else None
            checks.append((ref.path, local, ref.image_ok))
        edit = canonical_edit(req, [i["digest"] for i in inputs])
        key = job_key(tenant.id, edit)
        spec = {**edit, "inputs": inputs}
        request_hash = hashlib.sha256(
            canonical_json(
                {
                    "key": key,
                    "priority": req.priority,
                    "max_attempts": req.max_attempts,
                    "labels": req.labels,
                    "run_at": None if req.run_at is None else req.run_at.isoformat(),
                }
            )
        ).hexdigest()
        return PreparedEdit(key=key, spec=spec, request_hash=request_hash, checks=tuple(checks))

    async def _resolve(self, tenant: TenantRef, source: Source, where: str) -> dict[str, Any]:
        if source.path is not None:
            path = resolve_source_path(source.path, self.source_roots, where)
            try:
                digest = self.digests.cached(path)
                if digest is None:  # hashing a large file must not block the event loop
                    digest = await asyncio.to_thread(self.digests.digest, path)
            except OSError as exc:  # removed (or made unreadable) since it was found
                raise _source_vanished(where, exc) from exc
            return {"digest": digest, "path": str(path)}
        if source.s3 is not None:
            return await self._resolve_s3(tenant, source.s3, where)
        assert source.digest is not None
        # Another tenant's digest is answered exactly like one nobody uploaded.
        async with self.db.reader.connect() as conn:
            found = await owners.owns(conn, tenant.id, source.digest)
        if not found:
            raise SourceNotFound(
                "no uploaded blob has this digest",
                details=[
                    {
                        "path": where,
                        "message": "unknown digest",
                        "allowed": "the digest returned by POST /v1/sources",
                    }
                ],
            )
        return {"digest": source.digest, "path": None}

    async def _resolve_s3(self, tenant: TenantRef, url: str, where: str) -> dict[str, Any]:
        """An object in a granted prefix, pinned to its current version. Not granted and
        missing are the same answer."""
        bucket, key = parse_s3_url(url)
        async with self.db.reader.connect() as conn:
            granted = await grants.may_read(conn, tenant.id, bucket, key)
        found = await self.s3_sources.head(bucket, key) if granted else None
        if found is None:
            raise SourceNotFound(
                "no readable object at this S3 URL",
                details=[
                    {
                        "path": where,
                        "message": "object not found",
                        "allowed": "an object in a bucket prefix granted to this tenant",
                    }
                ],
            )
        digest = await self.s3_sources.digest(found)
        return {"digest": digest, "path": None, "s3": found.pin()}

    @property
    def s3_sources(self) -> S3Sources:
        if self._s3_sources is None:
            self._s3_sources = open_s3_sources(self.settings)
        return self._s3_sources

    async def close(self) -> None:
        if self._s3_sources is not None:
            await self._s3_sources.close()

    @traced("vidjobs.submit", _submit_attributes)
    async def submit(
        self,
        tenant: TenantRef,
        req: EditRequest,
        *,
        on_duplicate: OnDuplicate = OnDuplicate.RETURN_EXISTING,
        idempotency_key: str | None = None,
    ) -> SubmitResult:
        """Store the job once per key. A duplicate is answered with the existing job."""
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        prepared = await self.prepare(tenant, req)
        if idempotency_key is None:
            # The common duplicate costs one indexed read and no write. Rows are never
            # deleted, so an in-flight or succeeded row found here is final for this call.
            async with self.db.reader.connect() as conn:
                existing = await statements.select_job_by_key(conn, tenant.id, prepared.key)
            if existing is not None and not _may_run_again(existing):
                if on_duplicate is OnDuplicate.REJECT:
                    raise duplicate_of(existing)
                return SubmitResult(job=existing, created=False)
        await self._check_in_flight(tenant, prepared.key)
        await self._preflight(req, prepared)
        events: list[OutboxEvent] = []
        async with self.db.transaction() as conn:
            if idempotency_key is not None:
                bound = await self._bound_job(conn, tenant, idempotency_key, prepared)
                if bound is not None:
                    return SubmitResult(job=bound, created=False)
            [result] = await self._insert_or_reuse(conn, tenant, [(req, prepared)], events)
            if result.replayed and on_duplicate is OnDuplicate.REJECT:
                raise duplicate_of(result.job)
            if idempotency_key is not None:
                await self._bind(conn, tenant, idempotency_key, prepared)
        self._notify(events)
        return result

    @traced("vidjobs.submit_batch", _batch_attributes)
    async def submit_many(
        self,
        tenant: TenantRef,
        items: Sequence[tuple[EditRequest, PreparedEdit]],
        *,
        on_duplicate: OnDuplicate = OnDuplicate.RETURN_EXISTING,
    ) -> list[SubmitResult | VidjobsError]:
        """`submit` of several prepared edits (no two with the same key), answered in order:
        each item's result, or the error that refused it alone. The same checks as `submit`
        per item; the new runs are stored in one transaction (one multi-row INSERT of the
        jobs, one of their outbox rows) and announced once."""
        answers: list[SubmitResult | VidjobsError | None] = [None] * len(items)
        async with self.db.reader.connect() as conn:  # the common duplicate: one read for all
            existing = await statements.select_jobs_by_keys(
                conn, tenant.id, [prepared.key for _, prepared in items]
            )
        runs: list[int] = []  # items that may become new runs, in order
        for i, (req, prepared) in enumerate(items):
            found = existing.get(prepared.key)
            if found is not None and not _may_run_again(found):
                reject = on_duplicate is OnDuplicate.REJECT
                answers[i] = (
                    duplicate_of(found) if reject else SubmitResult(job=found, created=False)
                )
                continue
            try:
                # Earlier items of this call are not committed yet: count them as in flight.
                await self._check_in_flight(tenant, prepared.key, ahead=len(runs))
                await self._preflight(req, prepared)
            except VidjobsError as exc:
                answers[i] = exc
                continue
            runs.append(i)
        events: list[OutboxEvent] = []
        if runs:
            async with self.db.transaction() as conn:
                stored = await self._insert_or_reuse(conn, tenant, [items[i] for i in runs], events)
            for i, result in zip(runs, stored, strict=True):
                replayed = result.replayed and on_duplicate is OnDuplicate.REJECT
                answers[i] = duplicate_of(result.job) if replayed else result
        self._notify(events)
        return [a for a in answers if a is not None]

    async def _preflight(self, req: EditRequest, prepared: PreparedEdit) -> None:
        """Probe the path sources (`check_source`) and check the edit against every source
        (`check_plan`): only for what may become a new run."""
        probes: dict[str, dict[str, Any] | None] = {}
        if self.check_source is not None:
            for where, path, image_ok in prepared.checks:
                if path is not None:
                    try:
                        probes[where] = await self.check_source(where, path, image_ok)
                    except OSError as exc:  # the file went away after it was hashed
                        raise _source_vanished(where, exc) from exc
        if self.check_plan is not None:
            await self._check_plan(req, prepared, probes)

    async def _check_plan(
        self, req: EditRequest, prepared: PreparedEdit, probes: dict[str, dict[str, Any] | None]
    ) -> None:
        """Run `check_plan` with every source's probe: path sources' from `check_source`,
        uploaded blobs' from their stored `probe` (ownership was checked when resolved)."""
        assert self.check_plan is not None
        digests = {
            where: spec_input["digest"]
            for (where, path, _), spec_input in zip(
                prepared.checks, prepared.spec["inputs"], strict=True
            )
            if path is None and "s3" not in spec_input
        }
        if digests:
            blobs = Blob.__table__  # type: ignore[attr-defined]
            query = sa.select(blobs.c.digest, blobs.c.probe).where(
                blobs.c.digest.in_(set(digests.values()))
            )
            async with self.db.reader.connect() as conn:
                stored = {row.digest: row.probe for row in await conn.execute(query)}
            probes.update({where: stored.get(d) for where, d in digests.items()})
        self.check_plan(req, probes)

    async def _check_in_flight(self, tenant: TenantRef, key: str, ahead: int = 0) -> None:
        """Refuse a new run when the tenant already has its cap of pending+running jobs.
        `ahead`: new runs of the same call not committed yet (a batch's earlier items).

        A soft cap: concurrent submissions may overshoot it by their number. The count is an
        index scan as long as the backlog, so far below the cap it is re-read at most once a
        second and estimated in between (the last count plus this process's new jobs).
        """
        cap = tenant.max_in_flight or self.settings.max_in_flight_per_tenant
        if cap <= 0:
            return
        now = time.monotonic()
        counted, at = self._in_flight.get(tenant.id, (0, -1.0))
        if now - at < 1.0 and counted + 1 < cap * 0.9:
            self._in_flight[tenant.id] = (counted + 1, at)
            return
        async with self.db.reader.connect() as conn:
            in_flight = await statements.count_in_flight(conn, tenant.id) + ahead
        if len(self._in_flight) > 100_000:
            self._in_flight.clear()
        self._in_flight[tenant.id] = (in_flight + 1, now)
        if in_flight >= cap:
            raise TooManyRequests(
                f"this tenant has {in_flight} jobs pending or running, its cap is {cap}; "
                "retry when some have finished",
                retry_after=5,
                code="too_many_in_flight",
                details={"in_flight": in_flight, "cap": cap, "key": key},
            )

    async def _insert_or_reuse(
        self,
        conn: AsyncConnection,
        tenant: TenantRef,
        items: Sequence[tuple[EditRequest, PreparedEdit]],
        events: list[OutboxEvent],
    ) -> list[SubmitResult]:
        """Store each item's job (no key twice): new keys in one multi-row INSERT and their
        `job.submitted` rows in one more; a key that exists is answered or run again."""
        trace = _trace_fields()  # this run's trace: on the rows and in their events (tracing on)
        planned = [await self._job_values(conn, tenant, req, p, trace) for req, p in items]
        new = await statements.insert_jobs_if_absent(
            conn,
            [(values, req.run_at) for (req, _), (values, _) in zip(items, planned, strict=True)],
        )
        events += await outbox.insert_events(
            conn, [(job, EventType.SUBMITTED, trace) for job in new if job is not None]
        )
        results: list[SubmitResult] = []
        for (req, prepared), (values, chunks), job in zip(items, planned, new, strict=True):
            if job is None:
                results.append(await self._reuse(conn, tenant, req, prepared, values, events))
                continue
            if job.role == statements.GRAPH:
                inputs = prepared.spec["inputs"]
                probe = await graph.stored_probe(conn, str(inputs[0]["digest"]))
                plans = tasks.plan(req, inputs, probe, chunks)
                job, more = await graph.attach(conn, job, plans)
                events += more
            results.append(SubmitResult(job=job, created=True))
        return results

    async def _job_values(
        self,
        conn: AsyncConnection,
        tenant: TenantRef,
        req: EditRequest,
        prepared: PreparedEdit,
        trace: dict[str, str],
    ) -> tuple[dict[str, Any], chunkplan.Decision | None]:
        """The new row's values, and the chunking decision of a chunk candidate."""
        values = {
            **trace,
            "tenant_id": tenant.id,
            "key": prepared.key,
            "spec": prepared.spec,
            "labels": req.labels,
            "priority": req.priority,
            "max_attempts": req.max_attempts or self.settings.default_max_attempts,
        }
        chunks = None
        if chunkplan.candidate(req):  # only these read the probe before the insert
            inputs = prepared.spec["inputs"]
            probe = await graph.stored_probe(conn, str(inputs[0]["digest"]))
            chunks = chunkplan.decide(req, probe, self.settings.chunk_min_seconds)
            values["spec"] = {**prepared.spec, chunkplan.DECISION_KEY: chunks.as_spec()}
        if tasks.is_graph(req, chunks):
            values.update(role=statements.GRAPH, status=statements.WAITING)
        return values, chunks

    async def _reuse(
        self,
        conn: AsyncConnection,
        tenant: TenantRef,
        req: EditRequest,
        prepared: PreparedEdit,
        values: dict[str, Any],
        events: list[OutboxEvent],
    ) -> SubmitResult:
        """The key exists: its job, or a failed, cancelled or expired one queued again."""
        existing = await statements.select_job_by_key(conn, tenant.id, prepared.key)
        assert existing is not None, "ON CONFLICT DO NOTHING found a row that is not there"
        if _may_run_again(existing):
            # The new run reads the inputs resolved now (a path source's current digest).
            trace = {k: values[k] for k in ("traceparent",) if k in values}
            changes: dict[str, Any] = {
                "spec": values["spec"],
                "labels": req.labels,
                "priority": req.priority,
                "max_attempts": values["max_attempts"],
                **trace,
            }
            if req.run_at is not None:
                changes["run_after"] = req.run_at
            requeue = (
                task_statements.requeue_graph_if_failed_or_cancelled
                if existing.role == statements.GRAPH
                else statements.requeue_if_failed_or_cancelled
                if JobStatus(existing.status).is_rerunnable
                else statements.requeue_if_succeeded_with_expired_output
            )
            rerun = await requeue(conn, tenant.id, prepared.key, changes)
            if rerun is not None:
                events.append(
                    await outbox.insert_event(conn, rerun, EventType.RESUBMITTED, **trace)
                )
                if rerun.role == statements.GRAPH:
                    rerun, more = await graph.rerun(conn, rerun)
                    events += more
                return SubmitResult(job=rerun, created=False, rerun=True)
        return SubmitResult(job=existing, created=False)

    async def _bound_job(
        self, conn: AsyncConnection, tenant: TenantRef, client_key: str, prepared: PreparedEdit
    ) -> Job | None:
        """The job an unexpired `Idempotency-Key` is bound to, or None if it is unbound."""
        await conn.execute(
            sa.delete(idem).where(
                idem.c.tenant_id == tenant.id,
                idem.c.client_key == client_key,
                idem.c.expires_at <= db_now(),
            )
        )
        row = (
            await conn.execute(
                sa.select(idem.c.request_hash, idem.c.job_key).where(
                    idem.c.tenant_id == tenant.id, idem.c.client_key == client_key
                )
            )
        ).first()
        if row is None:
            return None
        if row[0] != prepared.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request body",
                details={"idempotency_key": client_key, "job_key": row[1]},
            )
        return await statements.select_job_by_key(conn, tenant.id, row[1])

    async def _bind(
        self, conn: AsyncConnection, tenant: TenantRef, client_key: str, prepared: PreparedEdit
    ) -> None:
        hours = self.settings.idempotency_key_hours
        stmt = (
            insert_on_conflict(conn, idem)
            .on_conflict_do_nothing()
            .values(
                tenant_id=tenant.id,
                client_key=client_key,
                request_hash=prepared.request_hash,
                job_key=prepared.key,
                expires_at=db_now(hours * 3600),
            )
        )
        result = await conn.execute(stmt)
        if not result.rowcount:
            # A concurrent request with the same header won the race: same body or refuse.
            await self._bound_job(conn, tenant, client_key, prepared)

    # --- reads -----------------------------------------------------------------------

    async def get(self, tenant: TenantRef, key: str) -> Job:
        async with self.db.reader.connect() as conn:
            job = await statements.select_job_by_key(conn, tenant.id, key)
        if job is None:
            raise JobNotFound(f"no job with key {key[:100]!r}")
        return job

    async def tasks(self, tenant: TenantRef, key: str) -> tuple[Job, list[graph.Member]]:
        """A job and its tasks (none for a simple job, which is its own one task)."""
        job = await self.get(tenant, key)
        if job.role != statements.GRAPH:
            return job, []
        async with self.db.reader.connect() as conn:
            return job, await graph.members(conn, job.id or 0)

    async def list_jobs(
        self,
        tenant: TenantRef,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        if not 1 <= limit <= 500:
            raise InvalidRequest(
                "limit must be between 1 and 500",
                details=[{"path": "limit", "message": f"got {limit}", "allowed": "1..500"}],
            )
        async with self.db.reader.connect() as conn:
            before = await self._cursor_position(conn, tenant, cursor) if cursor else None
            rows = await statements.select_jobs_page(conn, tenant.id, status, before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].key) if more and rows else None
        return Page(jobs=rows, next_cursor=next_cursor)

    async def _cursor_position(
        self, conn: AsyncConnection, tenant: TenantRef, cursor: str
    ) -> int:
        """The keyset position a cursor names: the row of the page's last job, looked up by
        its key among this tenant's jobs only (another tenant's cursor names nothing)."""
        last = await statements.select_job_by_key(conn, tenant.id, _decode_cursor(cursor))
        if last is None or last.id is None:
            raise _bad_cursor()
        return last.id

    async def events(self, tenant: TenantRef, key: str) -> list[OutboxEvent]:
        job = await self.get(tenant, key)
        async with self.db.reader.connect() as conn:
            return await outbox.select_job_events(conn, job.id or 0)

    # --- tenant actions ----------------------------------------------------------------

    async def cancel(self, tenant: TenantRef, key: str) -> Job:
        """pending: cancelled at once; running: cancel requested, honoured at the next heartbeat."""
        events: list[OutboxEvent] = []
        async with self.db.transaction() as conn:
            job = await statements.select_job_by_key(conn, tenant.id, key)
            if job is None:
                raise JobNotFound(f"no job with key {key[:100]!r}")
            if job.status == JobStatus.WAITING:  # a job of several tasks: they cascade
                changed, events = await graph.cancel(conn, job)
            else:
                found = await self._cancel_one(conn, job, tenant.id, key)
                if isinstance(found, Job):
                    return found
                changed, event = found
                events.append(await outbox.insert_event(conn, changed, event))
        self._notify(events)
        return changed

    async def _cancel_one(
        self, conn: AsyncConnection, job: Job, tenant_id: str, key: str
    ) -> Job | tuple[Job, EventType]:
        """Cancel a simple job: (changed job, its event), or the job as it stays."""
        if job.status == JobStatus.PENDING:
            changed = await statements.cancel_if_pending(conn, tenant_id, key)
            event = EventType.CANCELLED
        elif job.status == JobStatus.RUNNING:
            changed = await statements.request_cancel_if_running(conn, tenant_id, key)
            event = EventType.CANCEL_REQUESTED
        elif job.status == JobStatus.CANCELLED:
            return job
        else:
            raise InvalidTransition(
                f"job {key} is {job.status}: only pending or running jobs can be cancelled",
                details={"status": job.status},
            )
        if changed is None:  # cancel already requested, or the state moved meanwhile
            latest = await statements.select_job_by_key(conn, tenant_id, key)
            assert latest is not None
            return latest
        return changed, event

    async def retry(self, tenant: TenantRef, key: str) -> Job:
        """failed or cancelled -> pending, attempts reset."""
        events: list[OutboxEvent] = []
        async with self.db.transaction() as conn:
            job = await statements.select_job_by_key(conn, tenant.id, key)
            if job is None:
                raise JobNotFound(f"no job with key {key[:100]!r}")
            several = job.role == statements.GRAPH
            requeue = (
                task_statements.requeue_graph_if_failed_or_cancelled
                if several
                else statements.requeue_if_failed_or_cancelled
            )
            changed = await requeue(conn, tenant.id, key)
            if changed is not None and several:
                changed, more = await graph.rerun(conn, changed)
                events += more
            if changed is None:
                raise InvalidTransition(
                    f"job {key} is {job.status}: only failed or cancelled jobs can be retried",
                    details={"status": job.status},
                )
            events.append(
                await outbox.insert_event(conn, changed, EventType.REQUEUED, reason="retry")
            )
        self._notify(events)
        return changed

    def _notify(self, events: Sequence[outbox.Event]) -> None:
        if events and self.after_commit is not None:
            self.after_commit(events)


def _source_vanished(where: str, exc: OSError) -> SourceNotFound:
    """A path source that was found but could not be read any more (a filesystem error,
    not an outage): the client's to fix, 422."""
    reason = exc.strerror or type(exc).__name__
    return SourceNotFound(
        f"the source file could not be read any more ({reason}): it was removed or changed"
        " during the submission",
        details=[
            {
                "path": where,
                "message": f"file vanished or unreadable: {reason}",
                "allowed": "a regular file that stays in place inside a source root",
            }
        ],
    )


def _trace_fields() -> dict[str, str]:
    """`{"traceparent": ...}` of the current span when tracing is on, else nothing."""
    traceparent = current_traceparent()
    return {} if traceparent is None else {"traceparent": traceparent}


def _may_run_again(job: Job) -> bool:
    """failed or cancelled, or succeeded with an output that retention deleted."""
    if JobStatus(job.status).is_rerunnable:
        return True
    return job.status == JobStatus.SUCCEEDED and bool((job.output or {}).get("expired"))


def duplicate_of(job: Job) -> DuplicateJob:
    """The 409 of a request that rejects duplicates, for the job that exists."""
    return DuplicateJob(
        f"job {job.key} already exists and is {job.status}",
        details={"key": job.key, "status": job.status},
    )


def check_idempotency_key(value: str) -> None:
    if not 1 <= len(value) <= 255 or not value.isprintable() or not value.isascii():
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            details=[{"path": "header:Idempotency-Key", "message": "invalid value"}],
        )


# A list cursor names the last job of a page by its key, never by a row id: row ids are
# global, so a tenant reading them could count everyone's submissions. Keys are the
# tenant's own (derived from its id), and a cursor is resolved among its jobs only.
def _encode_cursor(last_key: str) -> str:
    raw = json.dumps({"after": last_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)["after"]
        if isinstance(value, str) and 0 < len(value) <= 80:
            return value
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise _bad_cursor()


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "cursor is not one this server handed out for this tenant's list",
        details=[
            {
                "path": "cursor",
                "message": "invalid cursor",
                "allowed": "next_cursor of a previous page of this tenant's list",
            }
        ],
    )


__all__ = ["JobService", "OnDuplicate", "Page", "SubmitResult"]
