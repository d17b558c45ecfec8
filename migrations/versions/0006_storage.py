"""Tenant-owned blobs: `blob_owners` says which tenants may use a digest.

A digest is usable by a tenant only if it uploaded, imported or produced it. Uploads made
before this revision have no owner recorded, so no tenant can use them until they are
uploaded again (the same bytes are stored once; a re-upload only records the owner).

Revision ID: 0006
Revises: 0004 (to be re-chained onto 0005 when both land)
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_owners",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "digest"),
    )


def downgrade() -> None:
    op.drop_table("blob_owners")
