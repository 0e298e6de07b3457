"""The centre's control measurements, kept beside the probes' results (issue 14, part 1).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2048), nullable=False),
        sa.Column("label", sa.String(2048), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("measured_at", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("detail", sa.Text()),
        sa.Column("ip_version", sa.SmallInteger()),
        sa.Column("figures", sa.Text(), nullable=False),
    )
    op.create_index("control_results_key_time", "control_results", ["key", "measured_at"])
    op.create_index("control_results_target_time", "control_results",
                    ["target", "measured_at"])
    op.create_index("control_results_time", "control_results", ["measured_at"])


def downgrade() -> None:
    op.drop_index("control_results_time", "control_results")
    op.drop_index("control_results_target_time", "control_results")
    op.drop_index("control_results_key_time", "control_results")
    op.drop_table("control_results")
