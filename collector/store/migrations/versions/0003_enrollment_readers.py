"""Enrollment tokens, read-only API credentials; a probe's credential may be pending.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("probes") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(64), nullable=True)
    op.create_table(
        "enrollments",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float()),
    )
    op.create_table(
        "readers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float()),
    )


def downgrade() -> None:
    op.drop_table("readers")
    op.drop_table("enrollments")
    with op.batch_alter_table("probes") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(64), nullable=False)
