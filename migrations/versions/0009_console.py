"""The operator console: operators, console sessions, and two indexes for its pages.

- `operators`: `vidjobs operator create NAME` tokens (sha256 only), which see every tenant.
- `console_sessions`: a signed-in browser (HttpOnly cookie token, stored as sha256) with the
  CSRF token of its forms and the token it signed in with (revoking it ends the session);
  expired rows are refused and deleted at the next sign-in.
- `ix_jobs_tenant_id` (tenant_id, id): a tenant's newest jobs of any status, keyset by id
  (the jobs page without a status filter; `ix_jobs_tenant_status_id` serves it with one).
- `ix_jobs_created_at`: the jobs page's time filter (a window of a large backlog).
- `ix_jobs_finished_at` (partial, finished jobs): throughput and failure rate of the last
  hour on the fleet page without reading every job.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

None of these columns changes after the insert except `finished_at`, which changes with
`status` (already indexed): heartbeats stay HOT updates (migration 0004).

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
FINISHED = sa.text("finished_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("api_key_id", sa.String(length=36), nullable=True),
        sa.Column("operator_id", sa.String(length=36), nullable=True),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.current_timestamp(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(
        "ix_console_sessions_expires_at", "console_sessions", ["expires_at"], unique=False
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_tenant_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_jobs_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_jobs_finished_at",
            ["finished_at"],
            unique=False,
            postgresql_where=FINISHED,
            sqlite_where=FINISHED,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_finished_at")
        batch_op.drop_index("ix_jobs_created_at")
        batch_op.drop_index("ix_jobs_tenant_id")
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("operators")
