"""The first schema: probes, results, state and access intervals.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _intervals(name: str, key: str) -> None:
    op.create_table(
        name,
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("mission", sa.String(16), nullable=False),
        sa.Column(key, sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float()),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
    )


def upgrade() -> None:
    op.create_table(
        "probes",
        sa.Column("probe_id", sa.String(64), primary_key=True),
        sa.Column("mission", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float()),
    )
    op.create_table(
        "results",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("outbox_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("mission", sa.String(16), nullable=False),
        sa.Column("check_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("check_group", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("ip_version", sa.SmallInteger()),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("detail", sa.Text()),
        sa.Column("confirmation", sa.Boolean(), nullable=False),
        sa.Column("local_ok", sa.Boolean()),
        sa.Column("interval_s", sa.Float()),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("probe_id", "outbox_id", "seq", name="results_probe_seq"),
    )
    op.create_index("results_check_time", "results", ["mission", "check_id", "started_at"])
    _intervals("state_intervals", "check_id")
    op.create_index("state_intervals_check_time", "state_intervals",
                    ["mission", "check_id", "started_at"])
    _intervals("access_intervals", "check_group")
    op.create_index("access_intervals_time", "access_intervals",
                    ["mission", "check_group", "started_at"])


def downgrade() -> None:
    for table in ("access_intervals", "state_intervals", "results", "probes"):
        op.drop_table(table)
