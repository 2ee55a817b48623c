"""Verifying the message log's hash chain and checkpoints, and signed archives of it.

`verify_log` walks a store's log in seq order and raises DeliveryError (DLV_LOG_TAMPERED) naming
the FIRST entry that was altered, removed or inserted, or (DLV_LOG_SIGNATURE) the first
checkpoint whose signature or signer fails. The encoding and checkpoint format are in
gateway.store.message_log.

How the first problem is told apart, walking rows in seq order:

* a gap in seq (or the highest seq ever used beyond the last row): that seq was **removed**;
* a row whose prev_sha256 is not the digest of the row before it, but is the digest of an
  earlier row: the rows in between were **inserted**;
* the same with a prev_sha256 no earlier row has: the row before it was **altered** (its digest
  rewritten with it);
* a row whose own digest does not match its contents: **altered** (or **inserted**, when the row
  after it chains past it);
* a consistent chain that no longer matches a signed checkpoint (everything after an edit was
  rewritten): entries after the previous good checkpoint up to it were altered, removed or
  inserted.

Archive (``gncgw log export``): UTF-8 JSON lines. The first is the header
``{"type": "header", "format": "gnc-log-archive/1", "administration", "from", "to",
"first_seq", "prev_sha256"}`` (prev_sha256: the chain head before the range), then one
``{"type": "entry", ...}`` per row (all columns; bytes as hex, the receipt as base64), then the
checkpoints whose head falls in the range (``{"type": "checkpoint", ..., "payload": base64,
"jws"}``), and last a statement ``{"type": "statement", "payload": base64, "jws"}`` signed
(typ ``gnc-log-archive+jws``) over canonical JSON naming the SHA-256 of every byte before the
statement line, the entry count, the last seq and its digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.envelope.jws import sign_detached, verify_detached
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding
from gateway.errors import (
    DLV_LOG_SIGNATURE,
    DLV_LOG_TAMPERED,
    ConfigError,
    DeliveryError,
    GatewayError,
)
from gateway.model.header import utc_now
from gateway.store.message_log import (
    CHECKPOINT_TYP,
    GENESIS,
    Checkpoint,
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    checkpoint_payload,
    digest_of,
)

ARCHIVE_FORMAT = "gnc-log-archive/1"
ARCHIVE_TYP = "gnc-log-archive+jws"

# Decides whether `chain` (leaf first) may sign for `administration` at `at`; raises if not.
SignerCheck = Callable[[str, Sequence[x509.Certificate], datetime], None]


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    head_seq: int
    head_sha256: bytes


def _tampered(message: str, seq: int | None) -> DeliveryError:
    where = f"message_log seq {seq}" if seq is not None else "message_log"
    return DeliveryError(message, code=DLV_LOG_TAMPERED, location=where)


def _name(entry: LogEntry) -> str:
    return f"entry seq {entry.seq} (message id {entry.message_id or '(unread)'!s})"


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO 8601 time", location="time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _first_chain_problem(
    rows: Sequence[LogEntry], first_seq: int, start_prev: bytes, sequence_used: int
) -> DeliveryError | None:
    """The first altered, removed or inserted row of the stored chain, if any."""
    expected_seq, expected_prev = first_seq, start_prev
    seen: dict[bytes, int] = {}  # stored digest -> index of the row carrying it
    for i, row in enumerate(rows):
        if row.seq != expected_seq:
            gap = (
                f"entry seq {expected_seq}"
                if row.seq == expected_seq + 1
                else f"entries seq {expected_seq}..{row.seq - 1}"
            )
            return _tampered(f"{gap} removed (the chain jumps to seq {row.seq})", expected_seq)
        if row.prev_sha256 != expected_prev:
            j = seen.get(row.prev_sha256)
            if j is not None and j < i - 1:
                inserted = rows[j + 1]
                return _tampered(
                    f"{_name(inserted)} inserted (seq {row.seq} chains to seq {rows[j].seq})",
                    inserted.seq,
                )
            if i == 0:
                return _tampered(
                    f"{_name(row)} altered (its prev_sha256 is not the chain head before it)",
                    row.seq,
                )
            before = rows[i - 1]
            return _tampered(
                f"{_name(before)} altered (its digest was rewritten: seq {row.seq} chained "
                "to another)",
                before.seq,
            )
        if digest_of(row, row.prev_sha256) != row.entry_sha256:
            following = rows[i + 1] if i + 1 < len(rows) else None
            if following is not None and following.prev_sha256 == expected_prev:
                return _tampered(
                    f"{_name(row)} inserted (seq {following.seq} chains past it)", row.seq
                )
            return _tampered(f"{_name(row)} altered (its digest does not match it)", row.seq)
        if row.entry_sha256 not in seen:
            seen[row.entry_sha256] = i
        expected_seq, expected_prev = row.seq + 1, row.entry_sha256
    if sequence_used >= expected_seq:
        gap = (
            f"entry seq {expected_seq}"
            if sequence_used == expected_seq
            else f"entries seq {expected_seq}..{sequence_used}"
        )
        return _tampered(f"{gap} removed (the log had reached seq {sequence_used})", expected_seq)
    return None


def check_checkpoint(checkpoint: Checkpoint, signer_check: SignerCheck) -> None:
    """The checkpoint's signature, its signer, and that its columns are what it signed."""
    where = f"message_log_checkpoint {checkpoint.id}"
    try:
        verified = verify_detached(checkpoint.jws, checkpoint.payload, CHECKPOINT_TYP)
        document = json.loads(checkpoint.payload)
        at = _parse_time(str(document["signed_at"]))
        signer_check(str(document["administration"]), verified.chain, at)
    except (GatewayError, ValueError, KeyError, TypeError) as error:
        raise DeliveryError(
            f"checkpoint {checkpoint.id} (seq {checkpoint.head_seq}): signature refused: {error}",
            code=DLV_LOG_SIGNATURE,
            location=where,
        ) from None
    expected = checkpoint_payload(
        checkpoint.administration,
        checkpoint.entries,
        checkpoint.head_seq,
        checkpoint.head_sha256,
        checkpoint.signed_at,
    )
    if expected != checkpoint.payload:
        raise DeliveryError(
            f"checkpoint {checkpoint.id} (seq {checkpoint.head_seq}): its stored fields are not "
            "the ones it signed",
            code=DLV_LOG_SIGNATURE,
            location=where,
        )


def verify_chain(
    rows: Sequence[LogEntry],
    checkpoints: Sequence[Checkpoint],
    signer_check: SignerCheck,
    *,
    first_seq: int = 1,
    start_prev: bytes = GENESIS,
    sequence_used: int = 0,
    check_counts: bool = True,
) -> VerifyReport:
    """Raise DeliveryError at the first problem; the recomputed head if there is none."""
    problem = _first_chain_problem(rows, first_seq, start_prev, sequence_used)
    if problem is not None:
        raise problem
    for checkpoint in checkpoints:
        check_checkpoint(checkpoint, signer_check)
    # Recompute the chain from its start (not trusting stored digests) against each checkpoint.
    wanted = sorted(checkpoints, key=lambda c: c.head_seq)
    index = 0
    prev = start_prev
    last_good = first_seq - 1
    for position, row in enumerate(rows, start=1):
        prev = digest_of(row, prev)
        while index < len(wanted) and wanted[index].head_seq <= row.seq:
            checkpoint = wanted[index]
            counts_ok = not check_counts or checkpoint.entries == position
            if checkpoint.head_seq != row.seq or prev != checkpoint.head_sha256 or not counts_ok:
                raise _tampered(
                    f"entries seq {last_good + 1}..{checkpoint.head_seq} were altered, removed or "
                    f"inserted: the chain no longer matches checkpoint {checkpoint.id} signed "
                    f"{checkpoint.signed_at}",
                    last_good + 1,
                )
            last_good = checkpoint.head_seq
            index += 1
    if index < len(wanted):
        checkpoint = wanted[index]
        raise _tampered(
            f"entries after seq {rows[-1].seq if rows else first_seq - 1} removed: checkpoint "
            f"{checkpoint.id} covers seq {checkpoint.head_seq}",
            rows[-1].seq + 1 if rows else first_seq,
        )
    head_seq = rows[-1].seq if rows else first_seq - 1
    return VerifyReport(len(rows), len(checkpoints), head_seq, prev)


def verify_log(log: SqliteMessageLog, signer_check: SignerCheck) -> VerifyReport:
    """Verify a store's whole log and its checkpoints."""
    return verify_chain(
        log.chain(), log.checkpoints(), signer_check, sequence_used=log.sequence_used()
    )


# -- archives ------------------------------------------------------------------------------------
def _line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def _entry_json(entry: LogEntry) -> dict[str, Any]:
    assert entry.at is not None
    return {
        "type": "entry",
        "seq": entry.seq,
        "logged_at": entry.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "direction": entry.direction.value,
        "message_id": entry.message_id,
        "partner": entry.partner,
        "utility_block": entry.utility_block,
        "message_type": entry.message_type,
        "binding": entry.binding.value,
        "envelope_sha256": entry.envelope_sha256.hex(),
        "receipt": base64.b64encode(entry.receipt).decode() if entry.receipt is not None else None,
        "outcome": entry.outcome.value,
        "code": entry.code,
        "prev_sha256": entry.prev_sha256.hex(),
        "entry_sha256": entry.entry_sha256.hex(),
    }


def _entry_of(document: dict[str, Any]) -> LogEntry:
    receipt = document["receipt"]
    return LogEntry(
        seq=int(document["seq"]),
        at=datetime.strptime(str(document["logged_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        ),
        direction=Direction(str(document["direction"])),
        message_id=str(document["message_id"]),
        partner=str(document["partner"]),
        utility_block=str(document["utility_block"]),
        message_type=str(document["message_type"]),
        binding=Binding(str(document["binding"])),
        envelope_sha256=bytes.fromhex(str(document["envelope_sha256"])),
        receipt=base64.b64decode(str(receipt), validate=True) if receipt is not None else None,
        outcome=LogOutcome(str(document["outcome"])),
        code=str(document["code"]),
        prev_sha256=bytes.fromhex(str(document["prev_sha256"])),
        entry_sha256=bytes.fromhex(str(document["entry_sha256"])),
    )


def _checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "type": "checkpoint",
        "id": checkpoint.id,
        "administration": checkpoint.administration,
        "entries": checkpoint.entries,
        "head_seq": checkpoint.head_seq,
        "head_sha256": checkpoint.head_sha256.hex(),
        "signed_at": checkpoint.signed_at,
        "payload": base64.b64encode(checkpoint.payload).decode(),
        "jws": checkpoint.jws,
    }


def _checkpoint_of(document: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        id=int(document["id"]),
        administration=str(document["administration"]),
        entries=int(document["entries"]),
        head_seq=int(document["head_seq"]),
        head_sha256=bytes.fromhex(str(document["head_sha256"])),
        signed_at=str(document["signed_at"]),
        payload=base64.b64decode(str(document["payload"]), validate=True),
        jws=str(document["jws"]),
    )


def _statement_payload(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def export_archive(
    log: SqliteMessageLog,
    identity: SigningIdentity,
    start: datetime,
    end: datetime,
    out: Path,
) -> int:
    """Write the signed archive of the entries logged in [start, end); the number of entries.

    The range is contiguous in seq: from the first row logged at or after `start` to the last
    row logged before `end`.
    """
    rows = [r for r in log.chain() if r.at is not None and start <= r.at < end]
    if rows:
        first_seq, last_seq = rows[0].seq, rows[-1].seq
        rows = log.chain(first_seq, last_seq)
        start_prev = rows[0].prev_sha256
    else:
        first_seq, last_seq, start_prev = 1, 0, GENESIS
    checkpoints = [c for c in log.checkpoints() if first_seq <= c.head_seq <= last_seq]
    administration = identity.administration.value
    body = _line(
        {
            "type": "header",
            "format": ARCHIVE_FORMAT,
            "administration": administration,
            "from": start.astimezone(UTC).isoformat(),
            "to": end.astimezone(UTC).isoformat(),
            "first_seq": first_seq,
            "prev_sha256": start_prev.hex(),
        }
    )
    body += b"".join(_line(_entry_json(r)) for r in rows)
    body += b"".join(_line(_checkpoint_json(c)) for c in checkpoints)
    statement = _statement_payload(
        {
            "typ": "gnc-log-archive",
            "administration": administration,
            "archive_sha256": hashlib.sha256(body).hexdigest(),
            "entries": len(rows),
            "last_seq": last_seq,
            "head_sha256": (rows[-1].entry_sha256 if rows else start_prev).hex(),
            "signed_at": utc_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    )
    jws = sign_detached(statement, identity, ARCHIVE_TYP)
    final = _line(
        {"type": "statement", "payload": base64.b64encode(statement).decode(), "jws": jws}
    )
    out.write_bytes(body + final)
    return len(rows)


def _archive_error(message: str) -> DeliveryError:
    return _tampered(f"archive: {message}", None)


def verify_archive(raw: bytes, signer_check: SignerCheck) -> VerifyReport:
    """Verify an archive on its own: statement signature and signer, chain, checkpoints, digest."""
    lines = raw.splitlines(keepends=True)
    if len(lines) < 2:
        raise _archive_error("too short to be an archive (header and statement at least)")
    try:
        documents = [json.loads(line) for line in lines]
        header, statement_line = documents[0], documents[-1]
        if header.get("type") != "header" or header.get("format") != ARCHIVE_FORMAT:
            raise ValueError(f"the first line is not a {ARCHIVE_FORMAT} header")
        if statement_line.get("type") != "statement":
            raise ValueError("the last line is not the signed statement")
        payload = base64.b64decode(str(statement_line["payload"]), validate=True)
        jws = str(statement_line["jws"])
        statement = json.loads(payload)
        entries = [_entry_of(d) for d in documents[1:-1] if d.get("type") == "entry"]
        checkpoints = [_checkpoint_of(d) for d in documents[1:-1] if d.get("type") == "checkpoint"]
        if len(entries) + len(checkpoints) != len(documents) - 2:
            raise ValueError("a line is neither an entry nor a checkpoint")
        first_seq = int(header["first_seq"])
        start_prev = bytes.fromhex(str(header["prev_sha256"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise _archive_error(f"cannot be read ({exc})") from None
    try:
        verified = verify_detached(jws, payload, ARCHIVE_TYP)
        if statement.get("typ") != "gnc-log-archive":
            raise ValueError("the statement is not an archive statement")
        signer_check(
            str(statement["administration"]),
            verified.chain,
            _parse_time(str(statement["signed_at"])),
        )
    except (GatewayError, ValueError, KeyError, TypeError) as error:
        raise DeliveryError(
            f"archive: the exporter's signature is refused: {error}",
            code=DLV_LOG_SIGNATURE,
            location="statement",
        ) from None
    if str(header.get("administration")) != str(statement["administration"]):
        raise _archive_error("the header names another administration than the statement")
    report = verify_chain(
        entries,
        checkpoints,
        signer_check,
        first_seq=first_seq,
        start_prev=start_prev,
        check_counts=False,
    )
    if hashlib.sha256(b"".join(lines[:-1])).hexdigest() != statement.get("archive_sha256"):
        raise _archive_error("its bytes are not the ones the exporter signed")
    if (
        statement.get("entries") != report.entries
        or statement.get("last_seq") != report.head_seq
        or statement.get("head_sha256") != report.head_sha256.hex()
    ):
        raise _archive_error("the signed statement does not match the entries")
    return report


__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_TYP",
    "SignerCheck",
    "VerifyReport",
    "check_checkpoint",
    "export_archive",
    "verify_archive",
    "verify_chain",
    "verify_log",
]
