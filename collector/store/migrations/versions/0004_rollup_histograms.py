"""Day rollups (resolution 86400) carry an RTT histogram, for monthly percentiles, and
have an index of their own, for the reports.

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
    days = sa.text("resolution_s = 86400")
    op.create_index("rollups_days", "rollups", ["bucket_start"], sqlite_where=days,
                    postgresql_where=days)


def downgrade() -> None:
    op.drop_index("rollups_days", "rollups")
    with op.batch_alter_table("rollups") as batch:
        batch.drop_column("rtt_histogram")
