"""A probe's newest report, for `unhindered-collector probes list`: when its last batch
came, the backlog it reported then, and its version (from its User-Agent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("probes") as batch:
        batch.add_column(sa.Column("last_report_at", sa.Float()))
        batch.add_column(sa.Column("backlog", sa.BigInteger()))
        batch.add_column(sa.Column("version", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("probes") as batch:
        batch.drop_column("version")
        batch.drop_column("backlog")
        batch.drop_column("last_report_at")
