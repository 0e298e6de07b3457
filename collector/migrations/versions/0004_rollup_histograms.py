"""Day rollups (resolution 86400) carry an RTT histogram, for monthly percentiles.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollups") as batch:
        batch.add_column(sa.Column("rtt_histogram", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("rollups") as batch:
        batch.drop_column("rtt_histogram")
