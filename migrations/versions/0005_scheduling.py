"""Scheduling: claims per tenant slice (fair share), and a per-tenant cap on running jobs.

- `ix_jobs_pending_due` leads with `tenant_id`: the claim reads each tenant's next due jobs
  from its own slice of the index (priority DESC, run_after, id), so tenants of equal
  priority can take turns without the claim reading every pending job.
- `tenants.max_running`: optional cap on a tenant's running jobs (NULL: no cap), beside
  `max_in_flight` (pending + running, enforced at submission).
- `batch_answers`: the whole answer of a batch submission sent with an `Idempotency-Key`,
  replayed for the same key and body until it expires.

Scheduled jobs (`run_at`) need no column: a job's `run_after` is when it becomes due.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def _recreate(*columns: str | sa.ColumnElement[int]) -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_pending_due")
        batch_op.create_index(
            "ix_jobs_pending_due",
            list(columns),
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_running", sa.Integer(), nullable=True))
    _recreate("tenant_id", sa.column("priority").desc(), "run_after", "id")
    op.create_table(
        "batch_answers",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("client_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "client_key"),
    )
    with op.batch_alter_table("batch_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_batch_answers_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("batch_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_answers_expires_at"))
    op.drop_table("batch_answers")
    _recreate(sa.column("priority").desc(), "run_after", "id")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("max_running")
