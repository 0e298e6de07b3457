"""Where an outage starts and ends, placed from the rounds themselves, with its
uncertainty (issue 14, part 6).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


COLUMNS = ("started_after", "started_before", "decided_at")


def upgrade() -> None:
    # Older intervals keep NULL: started where decided, bounds not known.
    with op.batch_alter_table("state_intervals") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("state_intervals") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
