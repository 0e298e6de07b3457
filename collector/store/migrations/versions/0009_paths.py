"""Paths recorded by probes when a check fails and as a daily baseline (issue 14, part 3).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paths",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("mission", sa.String(16), nullable=False),
        sa.Column("check_id", sa.String(64), nullable=False),
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("stopped_after_ttl", sa.SmallInteger(), nullable=False),
        sa.Column("result_ok", sa.Boolean(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index("paths_check_time", "paths", ["mission", "check_id", "started_at"])


def downgrade() -> None:
    op.drop_index("paths_check_time", table_name="paths")
    op.drop_table("paths")
