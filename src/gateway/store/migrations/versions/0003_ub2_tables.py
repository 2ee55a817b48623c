"""UB2 transaction data and control results: ``ub2_sent``, ``ub2_received``,
``ub2_control_results`` and the append-only ``ub2_refusals``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Before this revision the UB2 store created these tables itself with the same columns
(``CREATE TABLE IF NOT EXISTS``), so they are created only where missing and an existing
database is adopted as it is. The refusal log gets the append-only triggers the UB3 one has.
"""

from __future__ import annotations

from alembic import op

from gateway.store.schema import APPEND_ONLY_UB2, append_only_ddl, metadata

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("ub2_sent", "ub2_received", "ub2_control_results", "ub2_refusals")


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[name] for name in TABLES], checkfirst=True)
    for statement in append_only_ddl(bind.dialect.name, APPEND_ONLY_UB2):
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    metadata.drop_all(bind, tables=[metadata.tables[name] for name in TABLES], checkfirst=True)
