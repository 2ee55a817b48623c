"""gncgw sign / verify / inspect, run as a user would, through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.testpki import FOREIGN, TestPki

BINDINGS = ["protobuf", "xml"]


def _sign(
    pki: TestPki, tmp_path: Path, binding: str, key_admin: str = "EU", stem: str = "signing"
) -> Path:
    payload = tmp_path / "payload.xml"
    payload.write_bytes(b"<Ping>hello</Ping>")
    out = tmp_path / f"envelope.{binding}"
    code = main(
        [
            "sign",
            str(payload),
            "--binding",
            binding,
            "--key",
            str(pki.key_path(key_admin, stem)),
            "--cert",
            str(pki.path(key_admin, stem)),
            "--from",
            "EU",
            "--to",
            "US",
            "--ub",
            "UB1",
            "--type",
            "PING",
            "--content-type",
            "application/xml",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.mark.parametrize("binding", BINDINGS)
def test_signed_file_verifies_and_inspects(
    pki: TestPki, tmp_path: Path, binding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = _sign(pki, tmp_path, binding)
    assert main(["verify", str(envelope), "--trust-dir", str(pki.root)]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["inspect", str(envelope), "--trust-dir", str(pki.root), "--payload"]) == 0
    shown = capsys.readouterr().out
    assert f"binding             {binding}" in shown or binding in shown
    assert "EU -> US" in shown
    assert "trusted for EU" in shown
    assert "<Ping>hello</Ping>" in shown


@pytest.mark.parametrize("binding", BINDINGS)
def test_verify_fails_with_a_stable_code_for_a_tampered_file(
    pki: TestPki, tmp_path: Path, binding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = _sign(pki, tmp_path, binding)
    data = envelope.read_bytes()
    if binding == "xml":
        tampered = data.replace(b"<MessageType>PING<", b"<MessageType>PONG<")
    else:
        tampered = data.replace(b"PING", b"PONG")
    assert tampered != data
    envelope.write_bytes(tampered)
    assert main(["verify", str(envelope), "--trust-dir", str(pki.root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: SIG_")
    # inspect shows what the refused envelope claims, marked as not verified, and why.
    assert main(["inspect", str(envelope), "--trust-dir", str(pki.root)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT VERIFIED: SIG_") and "not to be believed" in out
    assert "PONG" in out and "EU -> US" in out and "REFUSED: SIG_" in out
    assert "trusted" not in out


def test_inspect_of_what_is_no_envelope_is_the_refusal_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.xml"
    junk.write_bytes(b"<NotAnEnvelope/>")
    assert main(["inspect", str(junk)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ENV_")


@pytest.mark.parametrize("binding", BINDINGS)
def test_verify_refuses_an_impostor_signer(
    pki: TestPki, tmp_path: Path, binding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = _sign(pki, tmp_path, binding, key_admin=FOREIGN, stem="EU-impostor")
    assert main(["verify", str(envelope), "--trust-dir", str(pki.root)]) == 1
    assert "error: TRUST_UNTRUSTED" in capsys.readouterr().err
    assert main(["inspect", str(envelope), "--trust-dir", str(pki.root)]) == 1
    assert "NOT TRUSTED: TRUST_UNTRUSTED" in capsys.readouterr().out


def test_verify_refuses_a_certificate_of_another_administration(
    pki: TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signing 'as EU' with CN's key works locally; any verifier refuses it as the wrong partner."""
    envelope = _sign(pki, tmp_path, "protobuf", key_admin="CN")
    assert main(["verify", str(envelope), "--trust-dir", str(pki.root)]) == 1
    assert "error: TRUST_WRONG_PARTNER" in capsys.readouterr().err


def test_verify_without_trust_source_is_a_config_error(
    pki: TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = _sign(pki, tmp_path, "protobuf")
    assert main(["verify", str(envelope)]) == 1
    assert "error: CFG_INVALID" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.xml")]) == 1
    assert "error: CFG_INVALID: cannot read" in capsys.readouterr().err
