"""The tables of the delivery core (inbox, outbox, message log), UB1, UB3 and conformance runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Creates what is missing, so a SQLite file made before migrations existed (by the stores' old
``CREATE TABLE IF NOT EXISTS`` DDL, same tables and columns) is adopted as it is. The tables are
those of gateway.store.schema as they stand at this revision (`TABLES`); a later change to a
table there needs its own revision (op.add_column, ...), and a new table is created by a new
revision, not by adding it to `TABLES`.
"""

from __future__ import annotations

from alembic import op

from gateway.store.schema import APPEND_ONLY, append_only_ddl, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "inbox",
    "outbox",
    "message_log",
    "message_log_checkpoint",
    "message_log_sequence",
    "aeo_record",
    "aeo_removed",
    "aeo_identifier",
    "aeo_history",
    "aeo_staging_part",
    "aeo_staging_record",
    "aeo_sync_done",
    "risk_sent",
    "risk_received",
    "risk_feedback",
    "risk_refusals",
    "risk_access_log",
    "conformance_runs",
    "conformance_promotions",
)


def upgrade() -> None:
    bind = op.get_bind()
    tables = [metadata.tables[name] for name in TABLES]
    metadata.create_all(bind, tables=tables, checkfirst=True)
    # (A message log made before the hash chain existed is chained by the store when it is
    # opened: gateway.store.message_log lifts its update trigger for that, once.)
    for statement in append_only_ddl(bind.dialect.name, APPEND_ONLY):
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    tables = [metadata.tables[name] for name in TABLES]
    metadata.drop_all(bind, tables=tables, checkfirst=True)
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gnc_append_only()")
