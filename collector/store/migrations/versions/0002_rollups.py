"""Rollups (per minute and per hour) and the collector's own facts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("mission", sa.String(16), primary_key=True),
        sa.Column("check_id", sa.String(64), primary_key=True),
        sa.Column("resolution_s", sa.Integer(), primary_key=True),
        sa.Column("bucket_start", sa.Float(), primary_key=True),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("rounds_ok", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("rtt_min_s", sa.Float()),
        sa.Column("rtt_median_s", sa.Float()),
        sa.Column("rtt_p95_s", sa.Float()),
        sa.Column("rtt_max_s", sa.Float()),
        sa.Column("sent", sa.Integer()),
        sa.Column("received", sa.Integer()),
    )
    op.create_table(
        "collector_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_index("results_received", "results", ["received_at"])


def downgrade() -> None:
    op.drop_index("results_received", "results")
    op.drop_table("collector_meta")
    op.drop_table("rollups")
