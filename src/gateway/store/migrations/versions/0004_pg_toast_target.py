"""PostgreSQL: keep envelope-sized rows of the inbox and message log in the table itself.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

An inbox row (envelope + signed receipt) is about 2.6 KB, above PostgreSQL's default TOAST
threshold (~2 KB), so every insert tried to compress the row and moved the receipt out to the
TOAST table: about an eighth of the server's CPU per received envelope. Raising the table's
``toast_tuple_target`` keeps such rows inline; larger envelopes are still TOASTed as before.
Nothing changes in what is stored. SQLite has no such setting: a no-op there.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("inbox", "message_log")
TARGET = 4080  # bytes: the largest target a default 8 KB page allows for one row inline


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (toast_tuple_target = {TARGET})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (toast_tuple_target)")
