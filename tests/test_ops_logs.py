"""Structured logs: `gncgw serve --log-format json` (or `[logging] format = "json"`) writes one
JSON object per line, and the lines about a received, refused or dead-lettered message carry
its ids and error code."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from ops_serve import (
    CN,
    MESSAGE_TYPE,
    UsClient,
    enqueue_for_us,
    seed_full_list_sent,
    serve,
    wait_until,
    write_config,
)

from gateway import testpki
from gateway.config import load_config
from gateway.errors import WRONG_RECEIVER, ConfigError
from gateway.ops.logs import JsonLinesFormatter, LogFormat, envelope_fields, use_log_format


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]


def test_serve_json_logs_carry_message_and_correlation_ids_and_error_codes(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pki)
    seed_full_list_sent(tmp_path / "eu.db")
    correlation = str(uuid.uuid4())
    with serve(config, "--log-format", "json", metrics=False) as served:
        us = UsClient(pki, served.grpc_target)
        try:
            accepted_id, accepted = us.envelope(correlation_id=correlation)
            assert us.submit(accepted_id, accepted).accepted
            stray_id, stray = us.envelope(receiver=CN)
            assert us.submit(stray_id, stray).receipt.error_code == WRONG_RECEIVER
        finally:
            us.close()
        (queued,) = enqueue_for_us(tmp_path / "eu.db", pki, 1)
        wait_until(lambda: f"dead letter {queued}" in served.text(), "the dead letter", 30)
    entries = json_lines(served.text())  # the whole log, start-up to stop, is JSON lines
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry

    (received,) = [e for e in entries if e.get("message_id") == accepted_id]
    assert received["correlation_id"] == correlation
    assert received["partner"] == "US"
    assert received["utility_block"] == "UB1"
    assert received["message_type"] == MESSAGE_TYPE
    assert received["level"] == "INFO" and received["logger"] == "gateway.node"
    assert "error_code" not in received
    assert received["message"].startswith("accepted UB1")

    (refused,) = [e for e in entries if e.get("error_code") == WRONG_RECEIVER]
    assert refused["partner"] == "US"  # the TLS peer: the header was not trusted
    assert "message_id" not in refused  # nothing of an untrusted header is logged as fact
    assert refused["message"].startswith("rejected envelope")

    about_queued = [e for e in entries if e.get("message_id") == queued]
    retry, dead = about_queued[0], about_queued[-1]
    assert len(about_queued) == 2, about_queued
    assert retry["level"] == "INFO" and "retrying later" in retry["message"]
    assert dead["level"] == "WARNING" and dead["message"].startswith(f"dead letter {queued}")
    for entry in about_queued:
        assert entry["partner"] == "US" and entry["message_type"] == MESSAGE_TYPE
        assert entry["error_code"].startswith("TRN_")
        uuid.UUID(entry["correlation_id"])  # read from our own sealed envelope


def test_logging_format_in_the_configuration_and_the_flag_that_overrides_it(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pki, extra='\n[logging]\nformat = "json"\n')
    assert load_config(config).log_format is LogFormat.JSON
    assert load_config(write_config(tmp_path, pki)).log_format is LogFormat.TEXT
    with pytest.raises(ConfigError, match=r"logging\.format: 'yaml' is not one of: text, json"):
        load_config(write_config(tmp_path, pki, extra='\n[logging]\nformat = "yaml"\n'))

    config = write_config(tmp_path, pki, extra='\n[logging]\nformat = "json"\n')
    seed_full_list_sent(tmp_path / "eu.db")
    with serve(config, metrics=False) as served:
        pass
    assert any(e["logger"] == "gateway.serve" for e in json_lines(served.text()))
    with serve(config, "--log-format", "text", metrics=False) as served:
        pass
    text = served.text()
    assert " INFO gateway.serve gateway EU serving" in text
    assert not text.lstrip().startswith("{")


def test_json_formatter_writes_one_object_with_the_fields_present() -> None:
    record = logging.LogRecord("gateway.node", logging.WARNING, __file__, 1, "x %s", ("y",), None)
    record.__dict__.update(envelope_fields(None, partner="CN", error_code="ENV_CLOCK_SKEW"))
    line = JsonLinesFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "x y" and entry["level"] == "WARNING"
    assert entry["partner"] == "CN" and entry["error_code"] == "ENV_CLOCK_SKEW"
    assert "message_id" not in entry and "correlation_id" not in entry
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failing = logging.LogRecord(
            "gateway.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonLinesFormatter().format(failing))
    assert "ValueError: boom" in entry["exception"]


def test_use_log_format_switches_the_given_handlers() -> None:
    handler = logging.StreamHandler()
    use_log_format("json", [handler])
    assert isinstance(handler.formatter, JsonLinesFormatter)
    use_log_format(LogFormat.TEXT, [handler])
    assert not isinstance(handler.formatter, JsonLinesFormatter)
