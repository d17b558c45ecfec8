"""The audit: fails on losses and on double effects alike.

Reads the database, the blob store and what the load generator was told, once the fleet
has drained. Every check is a count that must be exactly right.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness.load import Answer, LoadResult
from jobs.db import Database
from jobs.errors import BlobMissing, SourceChanged
from jobs.settings import Settings
from jobs.storage import Storage
from workers.ledger import media_ms as ledger_media_ms


@dataclass
class Audit:
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = (ok, detail)

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks.values())


async def drained(db: Database, keys: set[str], ledger_group: str) -> bool:
    """Every accepted job terminal, the outbox published, the ledger caught up."""
    async with db.engine.connect() as conn:
        open_jobs = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM jobs WHERE key = ANY(:keys) AND status IN ('pending','running','waiting')"
                ),
                {"keys": list(keys)},
            )
        ).scalar_one()
        unpublished = (
            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        ).scalar_one()
        succeeded = (
            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE type = 'job.succeeded'"))
        ).scalar_one()
        counted = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM processed_events p JOIN outbox o ON o.event_id = p.event_id "
                    "WHERE p.consumer = :g AND o.type = 'job.succeeded'"
                ),
                {"g": ledger_group},
            )
        ).scalar_one()
    return bool(open_jobs == 0 and unpublished == 0 and counted >= succeeded)


async def run_audit(db: Database, load: LoadResult, blobs: Storage, ledger_group: str) -> Audit:
    audit = Audit()
    keys = load.accepted_keys
    async with db.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.text(
                        "SELECT key, status, error_code, output, attempts FROM jobs WHERE key = ANY(:keys)"
                    ),
                    {"keys": list(keys)},
                )
            )
            .mappings()
            .all()
        )
        all_rows = (  # a job's task rows are not jobs (tasks are checked by harness.audit_tasks)
            await conn.execute(sa.text("SELECT count(*) FROM jobs WHERE role <> 'task'"))
        ).scalar_one()
        events = (
            (await conn.execute(sa.text("SELECT job_key, type, payload FROM outbox")))
            .mappings()
            .all()
        )
        unpublished = (
            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        ).scalar_one()
        usage = (
            await conn.execute(
                sa.text("SELECT coalesce(sum(jobs),0), coalesce(sum(media_ms),0) FROM usage")
            )
        ).one()
        ledger_ids = (
            (
                await conn.execute(
                    sa.text(
                        "SELECT p.event_id FROM processed_events p JOIN outbox o ON o.event_id = p.event_id "
                        "WHERE p.consumer = :g AND o.type = 'job.succeeded'"
                    ),
                    {"g": ledger_group},
                )
            )
            .scalars()
            .all()
        )
        succeeded_ids = (
            (
                await conn.execute(
                    sa.text("SELECT event_id FROM outbox WHERE type = 'job.succeeded'")
                )
            )
            .scalars()
            .all()
        )

    by_key = {r["key"]: r for r in rows}
    types = Counter((e["job_key"], e["type"]) for e in events)
    lost = sorted(
        k for k in keys if k not in by_key or by_key[k]["status"] not in ("succeeded", "failed")
    )
    failed_unexplained = sorted(
        k for k, r in by_key.items() if r["status"] == "failed" and not r["error_code"]
    )
    audit.check(
        "every accepted key ended succeeded or failed with a reason",
        not lost and not failed_unexplained,
        f"{len(keys)} keys; lost {len(lost)} {lost[:3]}; failed without reason {len(failed_unexplained)}",
    )

    succeeded = [r for r in rows if r["status"] == "succeeded"]
    double = sorted(k for k in keys if types[(k, "job.succeeded")] > 1)
    missing = sorted(r["key"] for r in succeeded if types[(r["key"], "job.succeeded")] != 1)
    audit.check(
        "exactly one committed completion per key",
        not double and not missing,
        f"{len(succeeded)} succeeded; keys completed twice {len(double)}; without their completion {len(missing)}",
    )

    reruns = {k: types[(k, "job.resubmitted")] for k in keys}
    extra_rows = all_rows - len(keys)
    second_201, answer_lost = wrong_201s(load.answers, reruns)
    duplicate_reruns = sorted(
        k
        for k in keys
        if reruns[k] and types[(k, "job.failed")] == 0 and types[(k, "job.cancelled")] == 0
    )
    audit.check(
        "no duplicate made a second row or a second run",
        extra_rows == 0
        and not second_201
        and not duplicate_reruns
        and all(types[(k, "job.submitted")] == 1 for k in keys),
        f"rows {all_rows} for {len(keys)} keys; keys with a wrong number of 201s {len(second_201)} {second_201[:3]} "
        f"(first answer lost, retry replayed: {len(answer_lost)}); "
        f"re-runs caused by duplicates {len(duplicate_reruns)}",
    )

    media_ms = sum(ledger_media_ms(r["output"]) for r in succeeded)
    audit.check(
        "the ledger equals the sum over succeeded jobs",
        (int(usage[0]), int(usage[1])) == (len(succeeded), media_ms),
        f"ledger {int(usage[0])} jobs / {int(usage[1])} ms; jobs table {len(succeeded)} jobs / {media_ms} ms",
    )

    audit.check(
        "the outbox is fully published",
        unpublished == 0,
        f"{unpublished} unpublished rows of {len(events)}",
    )

    counted = Counter(ledger_ids)
    audit.check(
        "every consumed event id recorded once",
        set(counted) == set(succeeded_ids) and all(n == 1 for n in counted.values()),
        f"{len(counted)} ledger records for {len(succeeded_ids)} job.succeeded events",
    )

    bad_outputs = []
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in succeeded:
            stored = list(stored_outputs(r["output"]))
            if not stored:
                bad_outputs.append(r["key"])
            for out in stored:
                checked += 1
                dest = Path(tmp) / "output"
                try:  # streamed from storage and verified against the digest on the way
                    size = await blobs.fetch(out["digest"], dest)
                except (SourceChanged, BlobMissing):
                    size = -1
                dest.unlink(missing_ok=True)
                if size != out.get("size"):
                    bad_outputs.append(r["key"])
    audit.check(
        "no visible output is partial (digest matches bytes)",
        not bad_outputs,
        f"{checked} outputs of {len(succeeded)} jobs checked; bad {len(bad_outputs)}",
    )

    attempts = Counter(int(r["attempts"]) for r in rows)
    audit.figures.update(
        jobs=len(keys),
        succeeded=len(succeeded),
        failed=len(keys) - len(succeeded) - len(lost),
        lost=len(lost),
        double_effects=len(double)
        + len(duplicate_reruns)
        + max(0, len(ledger_ids) - len(set(ledger_ids))),
        attempts_histogram=dict(sorted(attempts.items())),
        ledger_media_ms=int(usage[1]),
    )
    return audit


def wrong_201s(answers: list[Answer], reruns: dict[str, int]) -> tuple[list[str], list[str]]:
    """The keys whose 201s do not match their runs: each key is created once and once per
    re-run (a resubmission after a failure), so it has `1 + reruns` 201s.

    A client retry after a lost answer (a reset or a timeout: the job was made, the 201
    never arrived) is answered 200, replayed: that is the contract, not a double. It can
    happen to any request that made the job, whatever its kind: a twin, a reordered edit
    or an idempotent retry can reach the API before the edit's own first submission. Such
    a key has one 201 fewer. Returns (the wrong keys, the keys explained by a lost answer).
    """
    created = Counter(a.key for a in answers if a.status == 201)
    retried_200 = {a.key for a in answers if a.attempts > 1 and a.status == 200}
    wrong, lost = [], []
    for k in sorted(reruns):
        if created[k] == 1 + reruns[k]:
            continue
        if k in retried_200 and created[k] == reruns[k]:
            lost.append(k)
        else:
            wrong.append(k)
    return wrong, lost


def stored_outputs(output: Any) -> Iterator[dict[str, Any]]:
    """Every stored output a job's output points at: itself (a single pass), or each one
    nested in it (a job of tasks: `outputs.<name>`, `package`, ...)."""
    if isinstance(output, dict):
        if isinstance(output.get("digest"), str):
            yield output
            return
        for value in output.values():
            yield from stored_outputs(value)


def blob_store(run_dir: Path, env: dict[str, str]) -> Storage:
    """The fleet's store, as its processes open it (from their environment)."""
    from jobs.storage import open_storage

    s3 = {k: v for k, v in env.items() if k.startswith("AWS_")}
    os.environ.update(s3)
    return open_storage(
        Settings(
            data_dir=run_dir / "audit",
            storage_url=env["VIDJOBS_STORAGE_URL"],
            s3_endpoint_url=env.get("VIDJOBS_S3_ENDPOINT_URL"),
        )
    )
