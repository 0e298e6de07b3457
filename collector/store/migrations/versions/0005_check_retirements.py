"""Checks have a lifecycle: when a probe stopped running a check (issue 12, case 7).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "check_retirements",
        sa.Column("mission", sa.String(16), primary_key=True),
        sa.Column("check_id", sa.String(64), primary_key=True),
        sa.Column("retired_at", sa.Float(), primary_key=True),
        sa.Column("probe_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("check_retirements")
