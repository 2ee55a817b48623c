"""Structured logs: one JSON object per line, with the ids an operator searches by.

`gncgw serve --log-format json` (or `[logging] format = "json"`) switches the root handlers to
`JsonLinesFormatter`: time (UTC, ISO 8601 with milliseconds), level, logger, message, and the
envelope fields a log call passes with `extra=` (FIELDS: message_id, correlation_id, partner,
utility_block, message_type, error_code) when present, plus the exception text if any. Log
shippers (journald, Fluent Bit, Vector, Loki, Elastic) read that without a parsing rule.

The intake and delivery call sites build their `extra=` with `envelope_fields` / `log_fields`,
and only when the level is enabled: the bench's hot path pays one `isEnabledFor` when it is not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from gateway.model.codes import Administration
from gateway.model.header import EnvelopeHeader

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The envelope fields a log record may carry (LogRecord attributes set with `extra=`).
FIELDS = (
    "message_id",
    "correlation_id",
    "partner",
    "utility_block",
    "message_type",
    "error_code",
)


class LogFormat(StrEnum):
    TEXT = "text"  # one human-readable line: time, level, logger, message
    JSON = "json"  # one JSON object per line (JsonLinesFormatter)


class JsonLinesFormatter(logging.Formatter):
    """A log record as one line of JSON; the FIELDS it carries are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None and value != "":
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def formatter_for(log_format: LogFormat | str) -> logging.Formatter:
    if LogFormat(log_format) is LogFormat.JSON:
        return JsonLinesFormatter()
    return logging.Formatter(TEXT_FORMAT)


def use_log_format(
    log_format: LogFormat | str, handlers: Iterable[logging.Handler] | None = None
) -> None:
    """Switch `handlers` (by default the root logger's, set up by the gncgw command) to
    `log_format`."""
    formatter = formatter_for(log_format)
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.setFormatter(formatter)


def log_fields(**values: str | None) -> dict[str, str]:
    """`extra=` for a log call: the given FIELDS that have a value."""
    return {name: value for name, value in values.items() if value}


def envelope_fields(
    header: EnvelopeHeader | None,
    *,
    partner: Administration | str | None = None,
    error_code: str = "",
) -> dict[str, str]:
    """`extra=` for a log line about an envelope: its ids from a verified `header` (none when
    it could not be trusted), the partner (the sender, else `partner`), and an error code."""
    fields = log_fields(error_code=error_code)
    if header is not None:
        fields.update(
            message_id=header.message_id,
            correlation_id=header.correlation_id,
            partner=header.sender.value,
            utility_block=header.utility_block.value,
            message_type=header.message_type,
        )
    elif partner is not None:
        fields["partner"] = partner.value if isinstance(partner, Administration) else partner
    return fields


__all__ = [
    "FIELDS",
    "JsonLinesFormatter",
    "LogFormat",
    "envelope_fields",
    "formatter_for",
    "log_fields",
    "use_log_format",
]
