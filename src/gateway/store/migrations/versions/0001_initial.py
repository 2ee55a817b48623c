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

from gateway.store.schema import APPEND_ONLY, metadata

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

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION gnc_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'restrict_violation';
END
$body$
"""


def upgrade() -> None:
    bind = op.get_bind()
    tables = [metadata.tables[name] for name in TABLES]
    metadata.create_all(bind, tables=tables, checkfirst=True)
    if bind.dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table, message in APPEND_ONLY.items():
            op.execute(
                f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE "
                f"ON {table} FOR EACH ROW EXECUTE FUNCTION gnc_append_only('{message}')"
            )
            op.execute(
                f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION gnc_append_only('{message}')"
            )
    else:
        # (A message log made before the hash chain existed is chained by the store when it
        # is opened: gateway.store.message_log lifts its update trigger for that, once.)
        for table, message in APPEND_ONLY.items():
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{event.lower()} "
                    f"BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )


def downgrade() -> None:
    bind = op.get_bind()
    tables = [metadata.tables[name] for name in TABLES]
    metadata.drop_all(bind, tables=tables, checkfirst=True)
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gnc_append_only()")
