"""UB3 feedback received is kept no longer than the sender's retention: ``retain_until``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Feedback a partner sends (its remarks may name people) was kept for ever: only received risk
records had a retention date. The column is nullable text (an ISO-8601 UTC time like every time
in the store; NULL: kept, as for a sender without handling rules, and for feedback this gateway
sent). Revision 0001 creates ``risk_feedback`` from gateway.store.schema as it stands now, which
already has the column: it is added only where missing (a database made before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE, COLUMN = "risk_feedback", "retain_until"


def _present() -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(TABLE)}


def upgrade() -> None:
    if COLUMN not in _present():
        op.add_column(TABLE, sa.Column(COLUMN, sa.Text(), nullable=True))


def downgrade() -> None:
    if COLUMN in _present():
        with op.batch_alter_table(TABLE) as batch:
            batch.drop_column(COLUMN)
