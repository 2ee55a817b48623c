"""The UB3 tables, in the node's Database (SQLite or PostgreSQL; made by its migrations).

* ``risk_sent``: every UB3 record this gateway sent, per partner, as it was sent (after the
  handling rules' removals, which are listed), with the envelope's message id; feedback that
  comes back must name one of these (else RISK_UNKNOWN_REFERENCE), and risk information without
  feedback yet is *outstanding*;
* ``risk_received``: records partners sent us, each with its handling label and the date until
  which it may be kept (the partner's handling rules' retention); a newer record of the same
  originator and reference replaces the held one (an amendment);
* ``risk_feedback``: feedback sent and received;
* ``risk_refusals``: every outbound record refused before signing, with the code and the rule;
* ``risk_access_log``: every read of a received record through the CLI: who, when, what.

The two logs are append-only (the database refuses UPDATE and DELETE). Writes are functions of
a ``sqlite3.Connection`` so callers run them inside their unit of work (the send together with
its outbox entry, a receive together with its inbox record).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import Feedback, RiskInformation, RiskKind, UB3Record
from gateway.store.database import Database
from gateway.store.inbox import erase_envelope
from gateway.translate import ub3_exchange
from gateway.translate.ub3_exchange import PayloadForm

__all__ = [
    "AccessEntry",
    "Received",
    "Refusal",
    "RiskStore",
    "Sent",
]


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _payload(record: UB3Record) -> bytes:
    return ub3_exchange.encode(record, PayloadForm.PROTOBUF)


def _record(kind: str, payload: bytes) -> UB3Record:
    return ub3_exchange.decode(bytes(payload), RiskKind(kind), PayloadForm.PROTOBUF)


def _area(record: UB3Record) -> str:
    return ",".join(a.value for a in record.areas)


@dataclass(frozen=True)
class Sent:
    message_id: str
    partner: Administration
    kind: RiskKind
    originator: Administration
    reference: str
    label: HandlingLabel
    area: str
    sent_at: datetime
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Received:
    record: UB3Record
    sender: Administration
    message_id: str
    received_at: datetime
    retain_until: datetime | None

    @property
    def label(self) -> HandlingLabel:
        return self.record.label


@dataclass(frozen=True)
class Refusal:
    seq: int
    at: datetime
    actor: str
    partner: str
    kind: str
    originator: str
    reference: str
    code: str
    rule: str
    message: str
    source: str


@dataclass(frozen=True)
class AccessEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    originator: str
    kind: str
    reference: str
    label: str


_SENT = "message_id, partner, kind, originator, reference, label, area, sent_at, removed"


def _sent(row: Sequence[Any]) -> Sent:
    at = _parse_ts(str(row[7]))
    assert at is not None
    return Sent(
        str(row[0]), Administration(str(row[1])), RiskKind(str(row[2])),
        Administration(str(row[3])), str(row[4]), HandlingLabel(str(row[5])), str(row[6]), at,
        tuple(json.loads(str(row[8]))),
    )  # fmt: skip


class RiskStore:
    """The UB3 tables of the node's database."""

    def __init__(self, database: Database, own: Administration) -> None:
        self.database = database
        self.own = own

    # -- units of work (steps) ---------------------------------------------------------------
    @staticmethod
    def record_sent(
        conn: sqlite3.Connection,
        message_id: str,
        partner: Administration,
        record: UB3Record,
        removed: Sequence[str],
        at: datetime,
    ) -> None:
        conn.execute(
            f"INSERT INTO risk_sent ({_SENT}, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id, partner.value, record.kind.value, record.originator.value,
                record.reference, record.label.value, _area(record), _ts(at),
                json.dumps(list(removed)), _payload(record),
            ),
        )  # fmt: skip
        if isinstance(record, Feedback):
            RiskStore._feedback(conn, "sent", message_id, partner, record, at)

    @staticmethod
    def _feedback(
        conn: sqlite3.Connection,
        direction: str,
        message_id: str,
        partner: Administration,
        feedback: Feedback,
        at: datetime,
        retain_until: datetime | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO risk_feedback (message_id, direction, partner, originator, reference, "
            "outcome, label, at, payload, retain_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id, direction, partner.value, feedback.originator.value,
                feedback.reference, feedback.outcome.value, feedback.label.value, _ts(at),
                _payload(feedback), _ts(retain_until) if retain_until else None,
            ),
        )  # fmt: skip

    @staticmethod
    def was_sent(
        conn: sqlite3.Connection, partner: Administration, originator: Administration, ref: str
    ) -> bool:
        """Did this gateway send ``partner`` the risk information ``originator``/``ref``?"""
        row = conn.execute(
            "SELECT 1 FROM risk_sent WHERE partner = ? AND originator = ? AND reference = ? "
            "AND kind = ? LIMIT 1",
            (partner.value, originator.value, ref, RiskKind.RISK_INFORMATION.value),
        ).fetchone()
        return row is not None

    @staticmethod
    def store_received(
        conn: sqlite3.Connection,
        record: UB3Record,
        sender: Administration,
        message_id: str,
        at: datetime,
        retain_until: datetime | None,
    ) -> None:
        """A partner's record (a feedback is filed as feedback received), with its label."""
        if isinstance(record, Feedback):
            RiskStore._feedback(conn, "received", message_id, sender, record, at, retain_until)
            return
        valid_until = (
            record.valid_until.isoformat() if isinstance(record, RiskInformation) else None
        )
        superseded = conn.execute(
            "SELECT message_id FROM risk_received WHERE originator = ? AND kind = ? AND "
            "reference = ?",
            (record.originator.value, record.kind.value, record.reference),
        ).fetchone()
        if superseded is not None and str(superseded[0]) != message_id:
            # The new version replaces the row; the old version's envelope bytes would
            # otherwise outlive every retention purge (which follows the row). Its digests
            # and signed receipt stay in the inbox.
            erase_envelope(conn, str(superseded[0]))
        conn.execute(
            "INSERT INTO risk_received (originator, kind, reference, sender, "
            "message_id, label, area, valid_until, received_at, retain_until, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (originator, kind, reference) DO UPDATE SET sender = excluded.sender, "
            "message_id = excluded.message_id, label = excluded.label, area = excluded.area, "
            "valid_until = excluded.valid_until, received_at = excluded.received_at, "
            "retain_until = excluded.retain_until, payload = excluded.payload",
            (
                record.originator.value, record.kind.value, record.reference, sender.value,
                message_id, record.label.value, _area(record), valid_until, _ts(at),
                _ts(retain_until) if retain_until else None, _payload(record),
            ),
        )  # fmt: skip

    @staticmethod
    def log_access(
        conn: sqlite3.Connection, actor: str, action: str, records: Sequence[UB3Record],
        at: datetime,
    ) -> None:  # fmt: skip
        conn.executemany(
            "INSERT INTO risk_access_log (at, actor, action, originator, kind, reference, label) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (_ts(at), actor, action, r.originator.value, r.kind.value, r.reference,
                 r.label.value)
                for r in records
            ],
        )  # fmt: skip

    def log_refusal(
        self,
        *,
        at: datetime,
        actor: str,
        partner: str,
        kind: str,
        originator: str,
        reference: str,
        code: str,
        rule: str,
        message: str,
        source: str,
    ) -> None:
        """Append one refusal, in a unit of work of its own (the refused send wrote nothing)."""

        def unit(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO risk_refusals (at, actor, partner, kind, originator, reference, "
                "code, rule, message, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(at), actor, partner, kind, originator, reference, code, rule, message,
                 source),
            )  # fmt: skip

        self.database.write(unit)

    def purge_expired(self, now: datetime, actor: str) -> int:
        """Delete received records past their retention date, and the envelope bytes the inbox
        kept of them (its digests and receipt stay); each purge is access-logged."""

        def unit(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT kind, payload, message_id FROM risk_received "
                "WHERE retain_until IS NOT NULL AND retain_until < ?",
                (_ts(now),),
            ).fetchall()
            records = [_record(str(k), bytes(p)) for k, p, _ in rows]
            self.log_access(conn, actor, "purge", records, now)
            for *_, message_id in rows:
                erase_envelope(conn, str(message_id))
            conn.execute(
                "DELETE FROM risk_received WHERE retain_until IS NOT NULL AND retain_until < ?",
                (_ts(now),),
            )
            feedback = conn.execute(
                "SELECT payload, message_id FROM risk_feedback WHERE direction = 'received' "
                "AND retain_until IS NOT NULL AND retain_until < ?",
                (_ts(now),),
            ).fetchall()
            self.log_access(
                conn,
                actor,
                "purge",
                [_record(RiskKind.FEEDBACK.value, bytes(p)) for p, _ in feedback],
                now,
            )
            for _, message_id in feedback:
                erase_envelope(conn, str(message_id))
            conn.execute(
                "DELETE FROM risk_feedback WHERE direction = 'received' "
                "AND retain_until IS NOT NULL AND retain_until < ?",
                (_ts(now),),
            )
            return len(records) + len(feedback)

        return self.database.write(unit)

    # -- reads -------------------------------------------------------------------------------
    def received(
        self,
        *,
        reference: str | None = None,
        originator: Administration | None = None,
        kind: RiskKind | None = None,
    ) -> list[Received]:
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("reference", reference),
            ("originator", originator.value if originator else None),
            ("kind", kind.value if kind else None),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (
            "SELECT kind, payload, sender, message_id, received_at, retain_until FROM risk_received"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at, originator, kind, reference"
        out = []
        for row in self.database.reader().execute(sql, params).fetchall():
            received_at = _parse_ts(str(row[4]))
            assert received_at is not None
            out.append(
                Received(
                    _record(str(row[0]), bytes(row[1])), Administration(str(row[2])),
                    str(row[3]), received_at, _parse_ts(row[5]),
                )
            )  # fmt: skip
        return out

    def sent(self, partner: Administration | None = None) -> list[Sent]:
        sql = f"SELECT {_SENT} FROM risk_sent"
        params: list[object] = []
        if partner is not None:
            sql += " WHERE partner = ?"
            params.append(partner.value)
        rows = self.database.reader().execute(sql + " ORDER BY sent_at", params).fetchall()
        return [_sent(row) for row in rows]

    def sent_payload(self, message_id: str) -> UB3Record | None:
        row = (
            self.database.reader()
            .execute("SELECT kind, payload FROM risk_sent WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return _record(str(row[0]), bytes(row[1])) if row else None

    def outstanding(self, partner: Administration | None = None) -> list[Sent]:
        """Risk information this gateway sent for which the partner has sent no feedback."""
        sql = (
            f"SELECT {', '.join('s.' + c.strip() for c in _SENT.split(','))} FROM risk_sent s "
            "WHERE s.kind = ? AND NOT EXISTS (SELECT 1 FROM risk_feedback f WHERE "
            "f.direction = 'received' AND f.partner = s.partner AND f.originator = s.originator "
            "AND f.reference = s.reference)"
        )
        params: list[object] = [RiskKind.RISK_INFORMATION.value]
        if partner is not None:
            sql += " AND s.partner = ?"
            params.append(partner.value)
        rows = self.database.reader().execute(sql + " ORDER BY s.sent_at", params).fetchall()
        return [_sent(row) for row in rows]

    def feedback(self, direction: str | None = None) -> list[tuple[str, Administration, Feedback]]:
        sql = "SELECT direction, partner, payload FROM risk_feedback"
        params: list[object] = []
        if direction is not None:
            sql += " WHERE direction = ?"
            params.append(direction)
        rows = self.database.reader().execute(sql + " ORDER BY at", params).fetchall()
        out = []
        for d, partner, payload in rows:
            record = _record(RiskKind.FEEDBACK.value, bytes(payload))
            assert isinstance(record, Feedback)
            out.append((str(d), Administration(str(partner)), record))
        return out

    def refusals(self) -> list[Refusal]:
        rows = (
            self.database.reader()
            .execute(
                "SELECT seq, at, actor, partner, kind, originator, reference, code, rule, "
                "message, source FROM risk_refusals ORDER BY seq"
            )
            .fetchall()
        )
        return [
            Refusal(int(r[0]), _parse_ts(str(r[1])) or datetime.min, *map(str, r[2:])) for r in rows
        ]

    def access_log(self) -> list[AccessEntry]:
        rows = (
            self.database.reader()
            .execute(
                "SELECT seq, at, actor, action, originator, kind, reference, label "
                "FROM risk_access_log ORDER BY seq"
            )
            .fetchall()
        )
        return [
            AccessEntry(int(r[0]), _parse_ts(str(r[1])) or datetime.min, *map(str, r[2:]))
            for r in rows
        ]
