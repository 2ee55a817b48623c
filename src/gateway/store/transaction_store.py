"""The UB2 tables, in the node's database: transactions and control results, both ways.

* ``ub2_sent``: every transaction (consignment record) this gateway sent, per partner, with the
  envelope's message id, the lane it was sent on and the record as sent (UB2 JSON). A reference
  may be sent more than once (the original and its amendments, in order: one ordering key per
  partner and reference); a control result that comes back must name one of these;
* ``ub2_received``: transactions partners sent us, the same way;
* ``ub2_control_results``: control results sent and received, each linked to its transaction by
  partner, reference and (when the result names it) the transaction's message id;
* ``ub2_refusals``: every outbound UB2 message refused before signing, with the code, the
  location and the rule.

Portable SQL only (the same statements run on PostgreSQL): ``?`` placeholders, timestamps as
ISO 8601 text written from Python, ``INSERT ... ON CONFLICT``. The tables are defined in
gateway.store.schema and created by migration 0003 on either engine; the refusal log is
append-only (triggers refuse UPDATE and DELETE).
Writes are functions of a connection so callers run them inside their unit of work: a send with
its outbox entry, a receive with its inbox record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.model.codes import Administration
from gateway.model.consignment import Consignment
from gateway.model.control_result import ControlResult
from gateway.store.database import Database
from gateway.translate import ub2_exchange
from gateway.translate.ub2_exchange import Ub2Kind

__all__ = [
    "ControlResultEntry",
    "Direction",
    "Refusal",
    "Transaction",
    "TransactionStore",
]


class Direction(StrEnum):
    SENT = "sent"
    RECEIVED = "received"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: object) -> datetime:
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _consignment(text: object) -> Consignment:
    record = ub2_exchange.from_json(str(text), Ub2Kind.TRANSACTION)
    assert isinstance(record, Consignment)
    return record


def _control_result(text: object) -> ControlResult:
    record = ub2_exchange.from_json(str(text), Ub2Kind.CONTROL_RESULT)
    assert isinstance(record, ControlResult)
    return record


@dataclass(frozen=True)
class Transaction:
    """A transaction sent or received: the record, its partner, message id and lane."""

    direction: Direction
    partner: Administration
    message_id: str
    at: datetime
    record: Consignment
    lane: str = ""  # the lane it was sent on (sent only)

    @property
    def reference(self) -> str:
        return self.record.reference


@dataclass(frozen=True)
class ControlResultEntry:
    """A control result sent or received, with the transaction it concerns."""

    direction: Direction
    partner: Administration
    message_id: str
    transaction_reference: str
    transaction_message_id: str
    at: datetime
    result: ControlResult


@dataclass(frozen=True)
class Refusal:
    seq: int
    at: datetime
    actor: str
    partner: str
    kind: str
    reference: str
    code: str
    location: str
    rule: str
    message: str


class TransactionStore:
    """The UB2 tables of the node's database."""

    def __init__(self, database: Database, own: Administration) -> None:
        self.database = database
        self.own = own

    # -- units of work (steps) ---------------------------------------------------------------
    @staticmethod
    def record_sent(
        conn: sqlite3.Connection,
        message_id: str,
        partner: Administration,
        record: Consignment,
        lane: str,
        at: datetime,
    ) -> None:
        conn.execute(
            "INSERT INTO ub2_sent (message_id, partner, reference, source, lane, sent_at, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message_id, partner.value, record.reference, record.source.value, lane, _ts(at),
             ub2_exchange.to_json(record)),
        )  # fmt: skip

    @staticmethod
    def store_received(
        conn: sqlite3.Connection,
        message_id: str,
        sender: Administration,
        record: Consignment,
        at: datetime,
    ) -> None:
        """A partner's transaction (a resent message id is already refused by the inbox)."""
        conn.execute(
            "INSERT INTO ub2_received (message_id, sender, reference, source, received_at, "
            "record) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
            (message_id, sender.value, record.reference, record.source.value, _ts(at),
             ub2_exchange.to_json(record)),
        )  # fmt: skip

    @staticmethod
    def record_control_result(
        conn: sqlite3.Connection,
        direction: Direction,
        message_id: str,
        partner: Administration,
        result: ControlResult,
        transaction_message_id: str,
        at: datetime,
    ) -> None:
        conn.execute(
            "INSERT INTO ub2_control_results (message_id, direction, partner, reference, "
            "transaction_reference, transaction_message_id, outcome, at, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
            (message_id, direction.value, partner.value, result.reference,
             result.transaction_reference, transaction_message_id, result.outcome.value, _ts(at),
             ub2_exchange.to_json(result)),
        )  # fmt: skip

    @staticmethod
    def find_transaction(
        conn: sqlite3.Connection,
        direction: Direction,
        partner: Administration,
        reference: str,
        message_id: str | None = None,
    ) -> str | None:
        """The message id of the transaction ``reference`` exchanged with ``partner`` (the
        latest, or exactly ``message_id`` when given), or None when there is none."""
        table, column, at = (
            ("ub2_sent", "partner", "sent_at")
            if direction is Direction.SENT
            else ("ub2_received", "sender", "received_at")
        )
        sql = f"SELECT message_id FROM {table} WHERE {column} = ? AND reference = ?"
        params: list[object] = [partner.value, reference]
        if message_id is not None:
            sql += " AND message_id = ?"
            params.append(message_id)
        row = conn.execute(sql + f" ORDER BY {at} DESC LIMIT 1", params).fetchone()
        return str(row[0]) if row else None

    def log_refusal(
        self,
        *,
        at: datetime,
        actor: str,
        partner: str,
        kind: str,
        reference: str,
        code: str,
        location: str,
        rule: str,
        message: str,
    ) -> None:
        """Append one refusal, in a unit of work of its own (the refused send wrote nothing)."""

        def unit(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO ub2_refusals (at, actor, partner, kind, reference, code, location, "
                "rule, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(at), actor, partner, kind, reference, code, location, rule, message),
            )

        self.database.write(unit)

    # -- reads -------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return list(self.database.reader().execute(sql, params).fetchall())

    def sent(
        self, partner: Administration | None = None, reference: str | None = None
    ) -> list[Transaction]:
        """Transactions sent, oldest first."""
        where, params = _where(("partner", partner.value if partner else None),
                               ("reference", reference))  # fmt: skip
        rows = self._rows(
            f"SELECT partner, message_id, sent_at, record, lane FROM ub2_sent{where} "
            "ORDER BY sent_at, message_id",
            params,
        )
        return [
            Transaction(Direction.SENT, Administration(str(r[0])), str(r[1]), _parse_ts(r[2]),
                        _consignment(r[3]), str(r[4]))
            for r in rows
        ]  # fmt: skip

    def received(
        self, sender: Administration | None = None, reference: str | None = None
    ) -> list[Transaction]:
        """Transactions received, oldest first (an amendment follows its original)."""
        where, params = _where(("sender", sender.value if sender else None),
                               ("reference", reference))  # fmt: skip
        rows = self._rows(
            f"SELECT sender, message_id, received_at, record FROM ub2_received{where} "
            "ORDER BY received_at, message_id",
            params,
        )
        return [
            Transaction(Direction.RECEIVED, Administration(str(r[0])), str(r[1]),
                        _parse_ts(r[2]), _consignment(r[3]))
            for r in rows
        ]  # fmt: skip

    def control_results_for(
        self, reference: str, *, direction: Direction | None = None
    ) -> list[ControlResultEntry]:
        """The control results concerning the transaction ``reference``, oldest first."""
        where, params = _where(("transaction_reference", reference),
                               ("direction", direction.value if direction else None))  # fmt: skip
        return self._control_results(where, params)

    def control_results(self, direction: Direction | None = None) -> list[ControlResultEntry]:
        where, params = _where(("direction", direction.value if direction else None))
        return self._control_results(where, params)

    def _control_results(self, where: str, params: Sequence[object]) -> list[ControlResultEntry]:
        rows = self._rows(
            "SELECT direction, partner, message_id, transaction_reference, "
            f"transaction_message_id, at, record FROM ub2_control_results{where} "
            "ORDER BY at, message_id",
            params,
        )
        return [
            ControlResultEntry(Direction(str(r[0])), Administration(str(r[1])), str(r[2]),
                               str(r[3]), str(r[4]), _parse_ts(r[5]), _control_result(r[6]))
            for r in rows
        ]  # fmt: skip

    def refusals(self) -> list[Refusal]:
        rows = self._rows(
            "SELECT seq, at, actor, partner, kind, reference, code, location, rule, message "
            "FROM ub2_refusals ORDER BY seq"
        )
        return [Refusal(int(r[0]), _parse_ts(r[1]), *map(str, r[2:])) for r in rows]


def _where(*conditions: tuple[str, object]) -> tuple[str, list[object]]:
    parts = [f"{column} = ?" for column, value in conditions if value is not None]
    params = [value for _, value in conditions if value is not None]
    return (" WHERE " + " AND ".join(parts) if parts else ""), params
