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

Both run in bounded memory: the store is read `page` rows at a time (SqliteMessageLog.iter_chain)
and an archive line by line; the walk keeps the head, counters and the checkpoints (one per
`checkpoint_every` entries), never the rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import itertools
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

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
    DEFAULT_PAGE,
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
    # An archive's: whose log it is and the time range its exporter signed for.
    administration: str = ""
    time_range: tuple[str, str] | None = None


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


def _removed(expected_seq: int, last: int, why: str) -> DeliveryError:
    """Seqs expected_seq..last are missing."""
    one = last == expected_seq
    gap = f"entry seq {expected_seq}" if one else f"entries seq {expected_seq}..{last}"
    return _tampered(f"{gap} removed ({why})", expected_seq)


def _earlier_link(
    rows: Iterable[LogEntry], digest: bytes, before: int
) -> tuple[LogEntry, LogEntry] | None:
    """(row j, row j + 1) for the first row j < `before` (by position) carrying `digest`.

    Walked again only on the way to an error, so the walk that verifies need not remember
    every digest it has seen to tell an insertion from an alteration."""
    walk = iter(rows)
    for j, row in enumerate(walk):
        if j >= before:
            return None
        if row.entry_sha256 == digest:
            following = next(walk, None)
            return (row, following) if following is not None else None
    return None


def _mischained(
    row: LogEntry,
    position: int,
    before: LogEntry | None,
    rescan: Callable[[], Iterable[LogEntry]],
) -> DeliveryError:
    """The problem when `row` (at `position`, the rows before it sound) does not chain to the
    row before it: rows inserted after an earlier row it chains to, or the row before altered."""
    if position >= 2:
        link = _earlier_link(rescan(), row.prev_sha256, position - 1)
        if link is not None:
            chained_to, inserted = link
            return _tampered(
                f"{_name(inserted)} inserted (seq {row.seq} chains to seq {chained_to.seq})",
                inserted.seq,
            )
    if before is None:
        return _tampered(
            f"{_name(row)} altered (its prev_sha256 is not the chain head before it)", row.seq
        )
    return _tampered(
        f"{_name(before)} altered (its digest was rewritten: seq {row.seq} chained to another)",
        before.seq,
    )


def check_checkpoint(
    checkpoint: Checkpoint, signer_check: SignerCheck, administration: str | None = None
) -> None:
    """The checkpoint's signature, its signer, that its columns are what it signed and, given
    `administration`, that it is that administration's (a partner's key, trusted for the
    partner, must not vouch for a rewritten copy of our log)."""
    where = f"message_log_checkpoint {checkpoint.id}"
    if administration is not None and checkpoint.administration != administration:
        raise DeliveryError(
            f"checkpoint {checkpoint.id} (seq {checkpoint.head_seq}) is signed for "
            f"{checkpoint.administration}: this is {administration}'s log",
            code=DLV_LOG_SIGNATURE,
            location=where,
        )
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
    rows: Iterable[LogEntry],
    checkpoints: Sequence[Checkpoint],
    signer_check: SignerCheck,
    *,
    first_seq: int = 1,
    start_prev: bytes = GENESIS,
    sequence_used: int = 0,
    check_counts: bool = True,
    rescan: Callable[[], Iterable[LogEntry]] | None = None,
    administration: str | None = None,
) -> VerifyReport:
    """Raise DeliveryError at the first problem; the recomputed head if there is none.

    One pass over `rows` (a list, or a page-by-page walk of a store, or an archive read line by
    line) that keeps the head, counters and the checkpoints, never the rows, so memory does not
    grow with the log. The findings are reported in a fixed order: a problem of the chain
    itself (anywhere), then a checkpoint's signature, then the first checkpoint the chain no
    longer matches. `rescan` walks the rows again from the start, to name an inserted row
    (only then); it defaults to `rows` when that is a Sequence.
    """
    if rescan is None:
        if not isinstance(rows, Sequence):
            raise TypeError("verify_chain needs `rescan` to walk an iterator of rows again")
        rescan = _again(rows)
    wanted = sorted(checkpoints, key=lambda c: c.head_seq)
    index = 0  # the next checkpoint (by head) to reach
    mismatch: DeliveryError | None = None  # the first checkpoint the chain does not match
    last_good = first_seq - 1
    expected_seq, expected_prev = first_seq, start_prev
    count = 0
    before: LogEntry | None = None
    walk = iter(rows)
    for row in walk:
        if row.seq != expected_seq:
            raise _removed(expected_seq, row.seq - 1, f"the chain jumps to seq {row.seq}")
        if row.prev_sha256 != expected_prev:
            raise _mischained(row, count, before, rescan)
        digest = digest_of(row, row.prev_sha256)
        if digest != row.entry_sha256:
            following = next(walk, None)
            if following is not None and following.prev_sha256 == expected_prev:
                raise _tampered(
                    f"{_name(row)} inserted (seq {following.seq} chains past it)", row.seq
                )
            raise _tampered(f"{_name(row)} altered (its digest does not match it)", row.seq)
        count += 1
        before, expected_seq, expected_prev = row, row.seq + 1, digest
        # Every row so far is sound, so `digest` is the recomputed chain head at this seq.
        while mismatch is None and index < len(wanted) and wanted[index].head_seq <= row.seq:
            checkpoint = wanted[index]
            counts_ok = not check_counts or checkpoint.entries == count
            if checkpoint.head_seq != row.seq or digest != checkpoint.head_sha256 or not counts_ok:
                mismatch = _tampered(
                    f"entries seq {last_good + 1}..{checkpoint.head_seq} were altered, removed or "
                    f"inserted: the chain no longer matches checkpoint {checkpoint.id} signed "
                    f"{checkpoint.signed_at}",
                    last_good + 1,
                )
            else:
                last_good = checkpoint.head_seq
                index += 1
    if sequence_used >= expected_seq:
        raise _removed(expected_seq, sequence_used, f"the log had reached seq {sequence_used}")
    for checkpoint in checkpoints:
        check_checkpoint(checkpoint, signer_check, administration)
    if mismatch is not None:
        raise mismatch
    if index < len(wanted):
        checkpoint = wanted[index]
        raise _tampered(
            f"entries after seq {expected_seq - 1} removed: checkpoint "
            f"{checkpoint.id} covers seq {checkpoint.head_seq}",
            expected_seq,
        )
    return VerifyReport(count, len(checkpoints), expected_seq - 1, expected_prev)


def _again(rows: Sequence[LogEntry]) -> Callable[[], Iterable[LogEntry]]:
    return lambda: rows


def verify_log(
    log: SqliteMessageLog,
    signer_check: SignerCheck,
    *,
    administration: str | None = None,
    page: int = DEFAULT_PAGE,
) -> VerifyReport:
    """Verify a store's whole log and its checkpoints, reading `page` rows at a time;
    `administration`, whose log it is: every checkpoint must be signed for it.

    The checkpoints and the highest seq used are read first, so rows appended while the walk
    runs are at worst verified too, never taken for a removal or a checkpoint's missing rows."""
    checkpoints = log.checkpoints()
    sequence_used = log.sequence_used()
    outside = log.database.reader().execute("SELECT min(seq) FROM message_log WHERE seq < 1")
    below = outside.fetchone()[0]
    if below is not None:
        raise _tampered(f"a row with seq {below} was inserted outside the chain", int(below))
    try:
        return verify_chain(
            log.iter_chain(page=page),
            checkpoints,
            signer_check,
            sequence_used=sequence_used,
            rescan=lambda: log.iter_chain(page=page),
            administration=administration,
        )
    except (TypeError, ValueError, AttributeError) as exc:  # a column of another type
        raise _tampered(f"a row cannot be read as a log entry ({exc})", None) from None


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
    out: Path | BinaryIO,
    *,
    page: int = DEFAULT_PAGE,
) -> int:
    """Write the signed archive of the entries logged in [start, end); the number of entries.

    The range is contiguous in seq: from the first row logged at or after `start` to the last
    row logged before `end`. `out` is a path or a binary file; the archive is written to it line
    by line as the log is read `page` rows at a time (one walk to find the range, one to write
    it), so memory does not grow with the range.
    """
    if isinstance(out, Path):
        try:
            with out.open("wb") as target:
                return export_archive(log, identity, start, end, target, page=page)
        except BaseException:
            if out.is_file():  # no half archive left behind (a device such as stdout stays)
                out.unlink()
            raise
    first_seq: int | None = None
    last_seq = 0
    for r in log.iter_chain(page=page):
        if r.at is not None and start <= r.at < end:
            first_seq = r.seq if first_seq is None else first_seq
            last_seq = r.seq
    rows = log.iter_chain(first_seq, last_seq, page=page) if first_seq is not None else iter(())
    first = next(rows, None)
    if first is not None:
        first_seq, start_prev = first.seq, first.prev_sha256
    else:
        first_seq, last_seq, start_prev = 1, 0, GENESIS
    administration = identity.administration.value
    body = hashlib.sha256()

    def write(document: dict[str, Any]) -> None:
        line = _line(document)
        body.update(line)
        out.write(line)

    write(
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
    count, head = 0, start_prev
    for r in itertools.chain((first,), rows) if first is not None else ():
        write(_entry_json(r))
        count, head = count + 1, r.entry_sha256
    for c in log.checkpoints():
        if first_seq <= c.head_seq <= last_seq:
            write(_checkpoint_json(c))
    statement = _statement_payload(
        {
            "typ": "gnc-log-archive",
            "administration": administration,
            "archive_sha256": body.hexdigest(),
            "entries": count,
            "last_seq": last_seq,
            "head_sha256": head.hex(),
            "signed_at": utc_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    )
    jws = sign_detached(statement, identity, ARCHIVE_TYP)
    out.write(
        _line({"type": "statement", "payload": base64.b64encode(statement).decode(), "jws": jws})
    )
    return count


def _archive_error(message: str) -> DeliveryError:
    return _tampered(f"archive: {message}", None)


MAX_ARCHIVE_LINE = 16 * 1024 * 1024  # an entry line holds digests and a receipt, never more


def _lines(source: BinaryIO) -> Iterator[bytes]:
    """The lines of `source` one at a time, cut where bytes.splitlines cuts them (\\n, \\r\\n
    and \\r): the file is read by \\n, and a \\r\\n never spans two reads. A line longer
    than MAX_ARCHIVE_LINE is refused before it is read whole (bounded memory)."""
    while chunk := source.readline(MAX_ARCHIVE_LINE + 1):
        if len(chunk) > MAX_ARCHIVE_LINE:
            raise _archive_error(f"a line is longer than {MAX_ARCHIVE_LINE} bytes")
        yield from chunk.splitlines(keepends=True)


def _archive_entries(source: BinaryIO, offset: int, lines: int) -> Iterator[LogEntry]:
    """The entries among the `lines` lines at `offset` (the first pass checked they parse)."""
    source.seek(offset)
    for n, line in enumerate(_lines(source)):
        if n == lines:
            return
        try:
            document = json.loads(line)
            entry = _entry_of(document) if document.get("type") == "entry" else None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # changed meanwhile
            raise _archive_error(f"cannot be read ({exc})") from None
        if entry is not None:
            yield entry


def verify_archive(source: bytes | BinaryIO, signer_check: SignerCheck) -> VerifyReport:
    """Verify an archive on its own: statement signature and signer, chain, checkpoints, digest.

    `source` is read line by line, twice (first its digest, header, statement and
    checkpoints; then the chain), so memory does not grow with the archive; one that cannot
    seek (a pipe) is first copied to a temporary file.
    """
    if isinstance(source, bytes):
        return verify_archive(io.BytesIO(source), signer_check)
    if not source.seekable():
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(source, spool)
            spool.seek(0)
            return verify_archive(spool, signer_check)
    start = source.tell()
    lines = _lines(source)
    first, pending = next(lines, None), next(lines, None)
    if first is None or pending is None:
        raise _archive_error("too short to be an archive (header and statement at least)")
    body = hashlib.sha256(first)  # every byte before the statement line
    middle = 0  # lines between the header and the statement
    checkpoints: list[Checkpoint] = []
    # Problems found on the way, reported in the order a reader of the whole file reports them.
    bad_entry: Exception | None = None
    bad_checkpoint: Exception | None = None
    stray = False
    try:
        header = json.loads(first)
        for line in lines:
            document = json.loads(pending)
            body.update(pending)
            middle += 1
            kind = document.get("type") if isinstance(document, dict) else None
            if kind == "entry":
                try:
                    _entry_of(document)
                except (ValueError, KeyError, TypeError) as exc:
                    bad_entry = bad_entry or exc
            elif kind == "checkpoint":
                try:
                    checkpoints.append(_checkpoint_of(document))
                except (ValueError, KeyError, TypeError) as exc:
                    bad_checkpoint = bad_checkpoint or exc
            else:
                stray = True
            pending = line
        statement_line = json.loads(pending)
        if header.get("type") != "header" or header.get("format") != ARCHIVE_FORMAT:
            raise ValueError(f"the first line is not a {ARCHIVE_FORMAT} header")
        if statement_line.get("type") != "statement":
            raise ValueError("the last line is not the signed statement")
        payload = base64.b64decode(str(statement_line["payload"]), validate=True)
        jws = str(statement_line["jws"])
        statement = json.loads(payload)
        for problem in (bad_entry, bad_checkpoint):
            if problem is not None:
                raise problem
        if stray:
            raise ValueError("a line is neither an entry nor a checkpoint")
        first_seq = int(header["first_seq"])
        start_prev = bytes.fromhex(str(header["prev_sha256"]))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error) as exc:
        raise _archive_error(f"cannot be read ({type(exc).__name__}: {exc})"[:300]) from None
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
    offset = start + len(first)
    administration = str(statement["administration"])
    try:
        time_range = (str(header["from"]), str(header["to"]))
        earliest, latest = _parse_time(time_range[0]), _parse_time(time_range[1])
    except (KeyError, ValueError) as exc:
        raise _archive_error(f"its header names no time range ({exc})") from None

    def in_range(entries: Iterator[LogEntry]) -> Iterator[LogEntry]:
        for entry in entries:
            if entry.at is not None and not earliest <= entry.at < latest:
                raise _archive_error(
                    f"entry seq {entry.seq} was logged at {entry.at.isoformat()}, outside the "
                    f"range the archive claims ({time_range[0]} .. {time_range[1]})"
                )
            yield entry

    # Bytes the exporter did not sign: walk the chain only to name the entry that changed, and
    # spend no signature check on checkpoints that cannot be the exporter's (a forged archive
    # of many checkpoints would otherwise cost one verification each).
    signed = body.hexdigest() == statement.get("archive_sha256")
    report = verify_chain(
        in_range(_archive_entries(source, offset, middle)),
        checkpoints if signed else (),
        signer_check,
        first_seq=first_seq,
        start_prev=start_prev,
        check_counts=False,
        rescan=lambda: _archive_entries(source, offset, middle),
        administration=administration,
    )
    if not signed:
        raise _archive_error("its bytes are not the ones the exporter signed")
    if (
        statement.get("entries") != report.entries
        or statement.get("last_seq") != report.head_seq
        or statement.get("head_sha256") != report.head_sha256.hex()
    ):
        raise _archive_error("the signed statement does not match the entries")
    return replace(report, administration=administration, time_range=time_range)


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
