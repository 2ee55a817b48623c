"""Outbox claims for several nodes on one database: ``claimed_by`` and ``claim_expires``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A node claims the messages it is about to send (gateway.store.outbox: ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and settles them only while its claim holds. Both columns are nullable
text (a node id; an ISO-8601 UTC time like every time in the store), so existing rows need no
value. Revision 0001 creates the outbox from gateway.store.schema as it stands now, which
already has the columns: they are added only where missing (a database made before this
revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("claimed_by", "claim_expires")


def _present() -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns("outbox")}


def upgrade() -> None:
    present = _present()
    for name in COLUMNS:
        if name not in present:
            op.add_column("outbox", sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    present = _present()
    with op.batch_alter_table("outbox") as batch:
        for name in COLUMNS:
            if name in present:
                batch.drop_column(name)
