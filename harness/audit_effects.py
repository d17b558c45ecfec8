"""Audit checks beyond the jobs table: webhooks delivered, storage and scratch left clean.

- webhooks: every succeeded job has a delivery that succeeded (delivered at least once),
  and the receiver's deduplicated effects equal the succeeded jobs exactly;
- storage: every stored object has its `blobs` row and every row its object (no orphans
  either way), and no multipart upload is left open;
- scratch: no attempt dir or upload temp file is left in any process's scratch dir once the
  fleet has recovered (killed workers' dirs are for their successors and the reaper to clean).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import sqlalchemy as sa

from harness.audit import Audit
from harness.webhooks import Receiver
from jobs.db import Database

_OBJECT = re.compile(r"(?:^|/)sha256/[0-9a-f]{2}/([0-9a-f]{64})$")


async def _deliveries(db: Database) -> list[tuple[str, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT body->'data'->>'key' AS key, status FROM webhook_deliveries "
                "WHERE event_type = 'job.succeeded'"
            )
        )
        return [(k, status) for k, status in rows.all()]


async def undelivered(db: Database, succeeded: set[str]) -> set[str]:
    """Succeeded jobs whose webhook has no successful delivery yet (the drain waits for
    them: a reply that came too late is retried after the receiver already applied it)."""
    return succeeded - {k for k, status in await _deliveries(db) if status == "succeeded"}


async def check_webhooks(audit: Audit, db: Database, receiver: Receiver, succeeded: set[str]) -> None:
    rows = await _deliveries(db)
    delivered = {k for k, status in rows if status == "succeeded"}
    undelivered = sorted(succeeded - delivered)
    audit.check(
        "every succeeded job's webhook delivered at least once",
        not undelivered,
        f"{len(delivered & succeeded)} of {len(succeeded)} delivered; not delivered {len(undelivered)} "
        f"{undelivered[:3]}; deliveries {len(rows)}",
    )
    doubled = sorted(k for k, n in receiver.effects.items() if n > 1)
    effects = set(receiver.effects)
    audit.check(
        "webhook receiver's effects = succeeded jobs, once each",
        effects == succeeded and not doubled and receiver.unverified == 0,
        f"{len(effects)} effects for {len(succeeded)} succeeded jobs, {len(doubled)} doubled, "
        f"missing {len(succeeded - effects)}, extra {len(effects - succeeded)}; receiver {receiver.summary()}",
    )
    audit.figures["webhook_effects"] = len(effects)


def _list_s3(env: dict[str, str], direct_endpoint: str) -> tuple[set[str], int]:
    import boto3

    bucket, _, prefix = env["VIDJOBS_STORAGE_URL"].removeprefix("s3://").partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=direct_endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    )
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            m = _OBJECT.search(obj["Key"])
            if m:
                found.add(f"sha256:{m.group(1)}")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return found, len(uploads)


def _list_local(root: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in root.glob("sha256/??/*") if re.fullmatch(r"[0-9a-f]{64}", p.name)}


async def check_storage(audit: Audit, db: Database, env: dict[str, str], s3_endpoint: str | None) -> None:
    async with db.engine.connect() as conn:
        # Stored objects are uploads/imports (a `blobs` row each) and outputs of jobs and
        # tasks: each names its digest, at the top (a single pass) or nested (a package
        # task's `files`, a job of tasks' `outputs`).
        rows = set((await conn.execute(sa.text("SELECT digest FROM blobs"))).scalars())
        rows |= set(
            (
                await conn.execute(
                    sa.text(
                        "SELECT DISTINCT d #>> '{}' FROM jobs, "
                        "jsonb_path_query(jobs.output, 'lax $.**.digest') AS d "
                        "WHERE jobs.output IS NOT NULL AND jsonb_typeof(d) = 'string'"
                    )
                )
            ).scalars()
        )
    url = env["VIDJOBS_STORAGE_URL"]
    if url.startswith("s3://"):
        assert s3_endpoint
        objects, open_uploads = await asyncio.to_thread(_list_s3, env, s3_endpoint)
    else:
        objects, open_uploads = _list_local(Path(url.removeprefix("file://"))), 0
    orphans, dangling = sorted(objects - rows), sorted(rows - objects)
    audit.check(
        "storage: no orphaned objects, none missing, no open multipart upload",
        not orphans and not dangling and open_uploads == 0,
        f"{len(objects)} objects, {len(rows)} referenced (blob rows, job and task outputs); unreferenced objects {len(orphans)} "
        f"{orphans[:2]}; references without an object {len(dangling)} {dangling[:2]}; "
        f"open multipart uploads {open_uploads}",
    )


def scratch_leftovers(dirs: list[Path]) -> list[str]:
    left: list[str] = []
    for d in dirs:
        if d.is_dir():
            left += [f"{d.parent.name}/{e.name}" for e in d.iterdir() if e.name != "lost+found"]
    return left


async def check_scratch(audit: Audit, dirs: list[Path], wait_seconds: float) -> None:
    """Scratch dirs empty once recovered; waits up to `wait_seconds` for the cleaners."""
    left = scratch_leftovers(dirs)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        left = scratch_leftovers(dirs)
    audit.check(
        "no scratch leftovers after recovery",
        not left,
        f"{len(dirs)} scratch dirs; left over {len(left)} {left[:4]}",
    )

