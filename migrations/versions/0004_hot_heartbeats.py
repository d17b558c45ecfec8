"""Fewer index writes per job, HOT heartbeats, and storage settings for the hot tables.

- `ix_jobs_key` goes: every lookup by key also names the tenant, which
  `uq_jobs_tenant_key` serves. A job changes state three times or more (each a non-HOT
  update that writes an entry into every index), so one index fewer is three index writes
  fewer per job.
- The running-jobs index no longer holds `lease_expires_at`, only `id` (still partial on
  status = 'running'). A heartbeat changes the lease, progress and updated_at, none of them
  indexed any more, so it is a HOT update: no index writes at all, and the new row version
  stays on its page. The reaper reads every running job's lease through the index instead
  (running jobs number the fleet's slots, not the backlog).
- PostgreSQL storage: `jobs` at fillfactor 80 leaves room on each page for those HOT
  versions; both tables vacuum after 2% (not 20%) of their rows changed, so the dead
  versions that every claim, finish and publish leave behind are reclaimed while the
  tables are busy rather than after they doubled.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")
JOBS_STORAGE = (
    "fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,"
    " autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02"
)
OUTBOX_STORAGE = (
    "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,"
    " autovacuum_vacuum_insert_scale_factor = 0.02"
)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_key")
        batch_op.drop_index("ix_jobs_running_lease")
        batch_op.create_index(
            "ix_jobs_running", ["id"], unique=False, postgresql_where=RUNNING, sqlite_where=RUNNING
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE jobs SET ({JOBS_STORAGE})")
        op.execute(f"ALTER TABLE outbox SET ({OUTBOX_STORAGE})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE jobs RESET (fillfactor, autovacuum_vacuum_scale_factor,"
            " autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor)"
        )
        op.execute(
            "ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor,"
            " autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor)"
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_running")
        batch_op.create_index(
            "ix_jobs_running_lease",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=RUNNING,
            sqlite_where=RUNNING,
        )
        batch_op.create_index("ix_jobs_key", ["key"], unique=False)
