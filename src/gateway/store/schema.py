"""Every table of the node's database, defined once (SQLAlchemy Core) for SQLite and PostgreSQL.

The Alembic migrations in gateway.store.migrations create and change these tables; the stores
themselves speak plain SQL to them (see gateway.store.database for the connection they get).
Types are chosen to mean the same on both engines: text is TEXT, bytes are BLOB / BYTEA, keys
that SQLite numbers itself (INTEGER PRIMARY KEY AUTOINCREMENT) are BIGINT identity columns on
PostgreSQL. Timestamps are ISO-8601 UTC text computed in Python (``YYYY-MM-DDTHH:MM:SS.ffffffZ``),
so text order is time order on both engines and no SQL date function is needed.

Append-only tables (the message log, its checkpoints, the UB3 refusal and access logs) are
guarded by triggers the migration adds per dialect (``APPEND_ONLY``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)

metadata = MetaData()

# A key SQLite assigns itself (INTEGER PRIMARY KEY AUTOINCREMENT: never reused) and PostgreSQL
# from an identity sequence. (SQLite only makes INTEGER, not BIGINT, the rowid alias.)
_KEY = BigInteger().with_variant(Integer(), "sqlite")


def _serial(name: str) -> Column[int]:
    return Column(name, _KEY, Identity(), primary_key=True)


def _text(name: str, *, nullable: bool = False, default: str | None = None) -> Column[str]:
    server_default = text(f"'{default}'") if default is not None else None
    return Column(name, Text, nullable=nullable, server_default=server_default)


def _bytes(name: str, *, nullable: bool = False) -> Column[bytes]:
    return Column(name, LargeBinary, nullable=nullable)


def _int(name: str, *, nullable: bool = False, default: int | None = None) -> Column[int]:
    server_default = text(str(default)) if default is not None else None
    return Column(name, BigInteger, nullable=nullable, server_default=server_default)


# -- delivery: inbox, outbox, message log -------------------------------------------------------
inbox = Table(
    "inbox",
    metadata,
    Column("message_id", Text, primary_key=True),
    _bytes("payload_sha256"),
    _bytes("received_sha256"),
    _text("sender"),
    _text("receiver"),
    _text("utility_block"),
    _text("message_type"),
    _text("binding"),
    _text("created_at"),
    _text("stored_at"),
    _bytes("envelope"),
    _bytes("receipt"),
)

outbox = Table(
    "outbox",
    metadata,
    _serial("seq"),
    Column("message_id", Text, nullable=False, unique=True),
    _text("partner"),
    _text("binding"),
    _text("ordering_key"),
    _text("utility_block"),
    _text("message_type"),
    _bytes("envelope"),
    _bytes("envelope_sha256"),
    _text("state", default="pending"),
    _int("attempts", default=0),
    _text("enqueued_at"),
    _text("next_attempt", nullable=True),
    _text("last_attempt", nullable=True),
    _text("last_error_code", default=""),
    _text("last_error", default=""),
    _bytes("receipt", nullable=True),
    _text("delivered_at", nullable=True),
    # Several nodes (revision 0002): who claims the message until when; settling ends the claim
    # (claim_expires NULL) and leaves claimed_by naming who settled it (store.outbox).
    _text("claimed_by", nullable=True),
    _text("claim_expires", nullable=True),
    CheckConstraint("state IN ('pending', 'delivered', 'dead', 'discarded')", name="outbox_state"),
    sqlite_autoincrement=True,
)
_BLOCKING = text("state IN ('pending', 'dead')")
# Messages that block their key (what the head check probes).
Index(
    "outbox_blocking",
    outbox.c.partner,
    outbox.c.ordering_key,
    outbox.c.seq,
    postgresql_where=_BLOCKING,
    sqlite_where=_BLOCKING,
)
# Messages of a partner in a state, in enqueue order (what due() walks for 'pending').
Index("outbox_state", outbox.c.state, outbox.c.partner, outbox.c.seq)

message_log = Table(
    "message_log",
    metadata,
    # Assigned by the appender (the chain is serial); AUTOINCREMENT on SQLite so that
    # sqlite_sequence keeps the highest seq ever used.
    Column("seq", _KEY, primary_key=True, autoincrement=False),
    _text("logged_at"),
    _text("direction"),
    _text("message_id"),
    _text("partner"),
    _text("utility_block"),
    _text("message_type"),
    _text("binding"),
    _bytes("envelope_sha256"),
    _bytes("receipt", nullable=True),
    _text("outcome"),
    _text("code", default=""),
    _bytes("prev_sha256", nullable=True),
    _bytes("entry_sha256", nullable=True),
    CheckConstraint("direction IN ('sent', 'received')", name="message_log_direction"),
    sqlite_autoincrement=True,
)
Index("message_log_partner", message_log.c.partner, message_log.c.seq)
Index("message_log_message", message_log.c.message_id)

message_log_checkpoint = Table(
    "message_log_checkpoint",
    metadata,
    _serial("id"),
    _text("administration"),
    _int("entries"),
    _int("head_seq"),
    _bytes("head_sha256"),
    _text("signed_at"),
    _bytes("payload"),
    _text("jws"),
    sqlite_autoincrement=True,
)

# The highest seq ever used per sequence name, written in the appending transaction (what
# sqlite_sequence is on SQLite; used on PostgreSQL, where sequences are not transactional).
message_log_sequence = Table(
    "message_log_sequence",
    metadata,
    Column("name", Text, primary_key=True),
    _int("seq"),
)

# -- UB1: AEO lists ------------------------------------------------------------------------------
aeo_record = Table(
    "aeo_record",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("authorisation_number", Text, primary_key=True),
    _text("holder_id"),
    _text("status"),
    _int("version"),
    _text("status_effective"),
    _text("record"),
)
aeo_removed = Table(
    "aeo_removed",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("authorisation_number", Text, primary_key=True),
    _int("version"),
    _text("effective_date"),
)
aeo_identifier = Table(
    "aeo_identifier",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("identifier", Text, primary_key=True),
    Column("authorisation_number", Text, primary_key=True),
)
Index("aeo_identifier_number", aeo_identifier.c.owner, aeo_identifier.c.authorisation_number)
aeo_history = Table(
    "aeo_history",
    metadata,
    Column("id", _KEY, Identity(), primary_key=True),
    _text("owner"),
    _text("authorisation_number"),
    _text("kind"),
    _int("version"),
    _text("status"),
    _text("effective_date"),
    _text("reason"),
    _text("source"),
    _text("recorded_at"),
)
Index("aeo_history_number", aeo_history.c.owner, aeo_history.c.authorisation_number)
aeo_staging_part = Table(
    "aeo_staging_part",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("sync_id", Text, primary_key=True),
    Column("part", BigInteger, primary_key=True, autoincrement=False),
    _text("message_id"),
    _int("records"),
)
aeo_staging_record = Table(
    "aeo_staging_record",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("sync_id", Text, primary_key=True),
    Column("authorisation_number", Text, primary_key=True),
    _int("part"),
    _text("record"),
)
aeo_sync_done = Table(
    "aeo_sync_done",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("sync_id", Text, primary_key=True),
    _text("as_of"),
    _int("records"),
    _text("completed_at"),
)

# -- UB3: risk information -----------------------------------------------------------------------
risk_sent = Table(
    "risk_sent",
    metadata,
    Column("message_id", Text, primary_key=True),
    _text("partner"),
    _text("kind"),
    _text("originator"),
    _text("reference"),
    _text("label"),
    _text("area", default=""),
    _text("sent_at"),
    _text("removed", default="[]"),
    _bytes("payload"),
)
Index("risk_sent_reference", risk_sent.c.partner, risk_sent.c.originator, risk_sent.c.reference)
risk_received = Table(
    "risk_received",
    metadata,
    Column("originator", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("reference", Text, primary_key=True),
    _text("sender"),
    _text("message_id"),
    _text("label"),
    _text("area", default=""),
    _text("valid_until", nullable=True),
    _text("received_at"),
    _text("retain_until", nullable=True),
    _bytes("payload"),
)
risk_feedback = Table(
    "risk_feedback",
    metadata,
    Column("message_id", Text, primary_key=True),
    _text("direction"),
    _text("partner"),
    _text("originator"),
    _text("reference"),
    _text("outcome"),
    _text("label"),
    _text("at"),
    _bytes("payload"),
    _text("retain_until", nullable=True),  # revision 0005; NULL: kept
    CheckConstraint("direction IN ('sent', 'received')", name="risk_feedback_direction"),
)
Index(
    "risk_feedback_reference",
    risk_feedback.c.partner,
    risk_feedback.c.originator,
    risk_feedback.c.reference,
)
risk_refusals = Table(
    "risk_refusals",
    metadata,
    _serial("seq"),
    _text("at"),
    _text("actor"),
    _text("partner"),
    _text("kind"),
    _text("originator"),
    _text("reference"),
    _text("code"),
    _text("rule"),
    _text("message"),
    _text("source"),
    sqlite_autoincrement=True,
)
risk_access_log = Table(
    "risk_access_log",
    metadata,
    _serial("seq"),
    _text("at"),
    _text("actor"),
    _text("action"),
    _text("originator"),
    _text("kind"),
    _text("reference"),
    _text("label"),
    sqlite_autoincrement=True,
)

# -- UB2: transaction data and control results (revision 0003) ----------------------------------
ub2_sent = Table(
    "ub2_sent",
    metadata,
    Column("message_id", Text, primary_key=True),
    _text("partner"),
    _text("reference"),
    _text("source"),
    _text("lane"),
    _text("sent_at"),
    _text("record"),
)
Index("ub2_sent_reference", ub2_sent.c.partner, ub2_sent.c.reference)
ub2_received = Table(
    "ub2_received",
    metadata,
    Column("message_id", Text, primary_key=True),
    _text("sender"),
    _text("reference"),
    _text("source"),
    _text("received_at"),
    _text("record"),
)
Index("ub2_received_reference", ub2_received.c.sender, ub2_received.c.reference)
ub2_control_results = Table(
    "ub2_control_results",
    metadata,
    Column("message_id", Text, primary_key=True),
    _text("direction"),
    _text("partner"),
    _text("reference"),
    _text("transaction_reference"),
    _text("transaction_message_id"),
    _text("outcome"),
    _text("at"),
    _text("record"),
    CheckConstraint("direction IN ('sent', 'received')", name="ub2_control_results_direction"),
)
Index(
    "ub2_control_results_transaction",
    ub2_control_results.c.transaction_reference,
    ub2_control_results.c.partner,
)
ub2_refusals = Table(
    "ub2_refusals",
    metadata,
    _serial("seq"),
    _text("at"),
    _text("actor"),
    _text("partner"),
    _text("kind"),
    _text("reference"),
    _text("code"),
    _text("location"),
    _text("rule"),
    _text("message"),
    sqlite_autoincrement=True,
)

# -- conformance runs ----------------------------------------------------------------------------
conformance_runs = Table(
    "conformance_runs",
    metadata,
    _serial("id"),
    _text("partner"),
    _text("suite"),
    _text("suite_version"),
    _text("profile_version"),
    _text("suite_sha256"),
    _text("bindings"),
    _text("targets"),
    _text("mode"),
    _int("passed"),
    _text("failed_cases"),
    _text("statement"),
    _text("finished_at"),
    sqlite_autoincrement=True,
)
Index("conformance_runs_partner", conformance_runs.c.partner, conformance_runs.c.id)
conformance_promotions = Table(
    "conformance_promotions",
    metadata,
    _serial("id"),
    _text("partner"),
    _text("profile_version"),
    Column("run_id", _KEY, ForeignKey("conformance_runs.id"), nullable=False),
    _text("promoted_at"),
    sqlite_autoincrement=True,
)

# Tables no UPDATE or DELETE may touch (table -> what the refusal says).
APPEND_ONLY: dict[str, str] = {
    "message_log": "the message log is append-only",
    "message_log_checkpoint": "the message log is append-only",
    "risk_refusals": "the refusal log is append-only",
    "risk_access_log": "the access log is append-only",
}

# Tables of later revisions that no UPDATE or DELETE may touch (each revision adds its own).
APPEND_ONLY_UB2: dict[str, str] = {"ub2_refusals": "the refusal log is append-only"}

PG_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION gnc_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'restrict_violation';
END
$body$
"""


def append_only_ddl(dialect: str, tables: dict[str, str]) -> list[str]:
    """The triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on `tables`."""
    statements: list[str] = []
    if dialect == "postgresql":
        statements.append(PG_APPEND_ONLY_FUNCTION)
        for table, message in tables.items():
            statements.append(
                f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE "
                f"ON {table} FOR EACH ROW EXECUTE FUNCTION gnc_append_only('{message}')"
            )
            statements.append(
                f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION gnc_append_only('{message}')"
            )
        return statements
    for table, message in tables.items():
        for event in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{event.lower()} "
                f"BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    return statements


__all__ = ["APPEND_ONLY", "APPEND_ONLY_UB2", "append_only_ddl", "metadata"]
