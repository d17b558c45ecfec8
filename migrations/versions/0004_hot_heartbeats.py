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
- The outbox keeps three indexes, not four, and slimmer ones: a job's events are found by
  `job_id` (the job by tenant and key first) instead of by (tenant_id, job_key), and
  `event_id` loses its unique index: event ids are random UUIDs (122 random bits) and
  nothing looks an event up by its id. Every job writes two events at least.
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
    with op.batch_alter_table("outbox", schema=None, naming_convention=NAMING) as batch_op:
        batch_op.drop_index("ix_outbox_job")
        batch_op.drop_constraint(_event_id_unique(), type_="unique")
        batch_op.create_index("ix_outbox_job", ["job_id", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE jobs SET ({JOBS_STORAGE})")
        op.execute(f"ALTER TABLE outbox SET ({OUTBOX_STORAGE})")


# 0001 left the event_id unique constraint unnamed: PostgreSQL called it
# outbox_event_id_key; on SQLite batch mode finds it by this naming convention.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _event_id_unique() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "outbox_event_id_key"
    return "uq_outbox_event_id"


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
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_job")
        batch_op.create_unique_constraint(_event_id_unique(), ["event_id"])
        batch_op.create_index("ix_outbox_job", ["tenant_id", "job_key", "id"], unique=False)
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
