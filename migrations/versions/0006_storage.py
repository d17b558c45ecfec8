"""Tenant-owned blobs (`blob_owners`: which tenants may use a digest), direct uploads
(`uploads`) and S3 source grants (`source_grants`: bucket prefixes a tenant may read).

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
down_revision: str | None = "0005"
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


    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("multipart_id", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_uploads_tenant_id", "uploads", ["tenant_id"])
    op.create_table(
        "source_grants",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=1100), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "prefix"),
    )


def downgrade() -> None:
    op.drop_table("source_grants")
    op.drop_index("ix_uploads_tenant_id", table_name="uploads")
    op.drop_table("uploads")
    op.drop_table("blob_owners")
