"""`gncgw certs init`: the test PKI written to disk, as the demo and the tests use it."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gateway.cli import certs
from gateway.errors import ConfigError
from gateway.model.codes import Administration
from gateway.testpki import LEAF_NAMES


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gncgw")
    certs.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["certs", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("cli") / "pki"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run("init", str(root), "--admins", "EU,us") == 0
    return root, out.getvalue()


def test_init_writes_every_file_for_each_administration(written: tuple[Path, str]) -> None:
    root, _ = written
    for admin in ("EU", "US"):
        for stem in ("ca", *LEAF_NAMES):
            assert (root / admin / f"{stem}.pem").is_file()
            key = root / admin / f"{stem}.key.pem"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert (root / admin / "crl.pem").is_file()
        assert (root / "FOREIGN" / f"{admin}-impostor.pem").is_file()
    assert not (root / "CN").exists()  # only the administrations asked for


def test_revoked_serial_is_in_the_crl_and_expired_is_expired(written: tuple[Path, str]) -> None:
    root, _ = written
    now = dt.datetime.now(dt.UTC)
    for admin in ("EU", "US"):
        crl = x509.load_pem_x509_crl((root / admin / "crl.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((root / admin / "ca.pem").read_bytes())
        assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
        revoked = x509.load_pem_x509_certificate((root / admin / "revoked.pem").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
        signing = x509.load_pem_x509_certificate((root / admin / "signing.pem").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(signing.serial_number) is None
        expired = x509.load_pem_x509_certificate((root / admin / "expired.pem").read_bytes())
        assert expired.not_valid_after_utc < now
        assert signing.not_valid_after_utc > now


def test_summary_names_each_administration_and_its_revoked_serial(
    written: tuple[Path, str],
) -> None:
    root, output = written
    assert str(root) in output and "never use in production" in output
    for admin in ("EU", "US"):
        revoked = x509.load_pem_x509_certificate((root / admin / "revoked.pem").read_bytes())
        row = next(line for line in output.splitlines() if line.startswith(f"{admin} "))
        assert f"{revoked.serial_number:x}" in row
    assert "signing-next.pem" in output


def test_existing_pki_is_kept_unless_forced(written: tuple[Path, str]) -> None:
    root, _ = written
    ca_before = (root / "EU" / "ca.pem").read_bytes()
    with pytest.raises(ConfigError, match="--force"):
        run("init", str(root), "--admins", "EU")
    assert (root / "EU" / "ca.pem").read_bytes() == ca_before


def test_force_replaces_the_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("init", str(tmp_path), "--admins", "CH") == 0
    before = (tmp_path / "CH" / "ca.pem").read_bytes()
    assert run("init", str(tmp_path), "--admins", "CH", "--force") == 0
    assert (tmp_path / "CH" / "ca.pem").read_bytes() != before
    assert "CH " in capsys.readouterr().out


def test_unknown_or_repeated_administration_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown administration code 'XX'") as info:
        run("init", str(tmp_path), "--admins", "EU,XX")
    assert info.value.code == "CFG_INVALID"
    with pytest.raises(ConfigError, match="repeats"):
        run("init", str(tmp_path), "--admins", "EU,eu")
    assert not any(tmp_path.iterdir())  # nothing written


def test_trust_from_directory_trusts_what_init_wrote(written: tuple[Path, str]) -> None:
    root, _ = written
    trust = certs.trust_from_directory(root)
    assert set(trust.administrations) == {Administration.EU, Administration.US}
    signing = x509.load_pem_x509_certificate((root / "US" / "signing.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    assert trust.check_signer(Administration.US, [signing], now).administration is Administration.US
    with pytest.raises(ConfigError, match="not a directory"):
        certs.trust_from_directory(root / "missing")


def test_gncgw_prints_the_error_code_and_exits_non_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "certs", "init", str(tmp_path), "--admins", "XX"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: CFG_INVALID: unknown administration code 'XX'")
