"""Tasks: a job of several tasks (role "graph") and its task rows (role "task").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Task rows live in `jobs` (claimed by the same statement as every job); `waiting` counts
the unfinished rows a waiting row depends on, `task_edges` says who waits for whom and
`job_tasks` names a job's tasks. Existing rows become role "job" with nothing to wait for.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=8), nullable=False, server_default="job")
        )
        batch_op.add_column(sa.Column("waiting", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "task_edges",
        sa.Column("upstream_id", sa.BigInteger(), nullable=False),
        sa.Column("downstream_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("upstream_id", "downstream_id"),
    )
    op.create_table(
        "job_tasks",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("depends_on", JSON, nullable=False),
        sa.Column("publish_as", sa.String(length=100), nullable=True),
        sa.Column("reused", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    with op.batch_alter_table("job_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_job_tasks_task", ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_job_tasks_task")
    op.drop_table("job_tasks")
    op.drop_table("task_edges")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("waiting")
        batch_op.drop_column("role")
