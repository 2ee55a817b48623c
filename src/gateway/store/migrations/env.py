"""Alembic environment: always run programmatically (gateway.store.database.upgrade) on a
connection the caller opened; there is no alembic.ini and no offline (SQL script) mode."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from gateway.store.schema import metadata

# Two nodes starting together on one PostgreSQL database must not both run a migration: the
# first takes this transaction-level lock, the second waits and then finds the schema at head.
_MIGRATION_LOCK = 0x676E635F6D6967  # "gnc_mig"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
    context.run_migrations()
