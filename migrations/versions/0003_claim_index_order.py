"""The pending-jobs index in the claim's order: (priority DESC, run_after, id).

The claim orders by priority DESC, run_after, id. An ascending index cannot give that
order, so every claim sorted every pending job (2 ms at 5,000 pending, growing with the
backlog); in the claim's own order the claim reads just the first due rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
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
    _recreate(sa.column("priority").desc(), "run_after", "id")


def downgrade() -> None:
    _recreate("priority", "run_after", "id")
