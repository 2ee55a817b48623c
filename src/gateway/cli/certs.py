"""gncgw certs init DIR: a throw-away test PKI for tests and the demo (never for production)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from gateway.errors import ConfigError
from gateway.model.codes import Administration
from gateway.testpki import FOREIGN, TestPki, init_test_pki
from gateway.trust.loading import administration, trust_from_pki_files
from gateway.trust.store import TrustStore

# What each file of an administration's directory is for, in the order they are listed.
ROLES: tuple[tuple[str, str], ...] = (
    ("ca.pem", "root CA: the anchor partners configure to trust this administration"),
    ("crl.pem", "the CA's CRL (lists revoked.pem)"),
    ("signing.pem", "EC P-256 envelope-signing certificate (ES256, ecdsa-sha256)"),
    ("signing-rsa.pem", "RSA-2048 signing certificate (PS256, rsa-sha256)"),
    ("signing-next.pem", "the next signing key, for rotation tests"),
    ("tls.pem", "TLS server and client certificate (localhost, 127.0.0.1)"),
    ("expired.pem", "signing certificate whose validity has ended"),
    ("revoked.pem", "signing certificate listed in crl.pem"),
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    certs = subparsers.add_parser("certs", help="test PKI for tests and the demo")
    actions = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="write a root CA per administration with signing, TLS, expired and revoked "
        "certificates, and an impostor CA (test keys only)",
    )
    init.add_argument("directory", metavar="DIR", help="where to write the PKI (e.g. var/pki)")
    init.add_argument(
        "--admins",
        default=None,
        help="comma-separated administration codes (default: all, e.g. EU,US,CN)",
    )
    init.add_argument(
        "--force", action="store_true", help="replace a PKI already in DIR (its keys are lost)"
    )
    init.set_defaults(func=cmd_init)


def parse_admins(text: str | None) -> tuple[str, ...] | None:
    """`EU,US` -> ('EU', 'US'); unknown or repeated codes are a ConfigError."""
    if text is None:
        return None
    codes = [administration(part, location="--admins").value for part in text.split(",") if part]
    if not codes:
        raise ConfigError("--admins names no administration", location="--admins")
    if len(set(codes)) != len(codes):
        raise ConfigError(f"--admins repeats a code: {text}", location="--admins")
    return tuple(codes)


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    admins = parse_admins(args.admins)
    existing = sorted(p.parent.name for p in root.glob("*/ca.pem")) if root.is_dir() else []
    if existing and not args.force:
        raise ConfigError(
            f"{root} already holds a PKI ({', '.join(existing)}); pass --force to replace it",
            location=str(root),
        )
    pki = init_test_pki(root, admins)
    print(render_summary(pki, admins))
    return 0


def render_summary(pki: TestPki, admins: tuple[str, ...] | None) -> str:
    """A short table of what was written: one row per administration, then the file roles."""
    codes = admins or tuple(a.value for a in Administration)
    rows = [("ADMIN", "CA SHA-256 (first 16 hex)", "CA VALID UNTIL", "REVOKED SERIAL")]
    for code in codes:
        ca = pki.ca(code)
        revoked = pki.cert(code, "revoked")
        rows.append(
            (
                code,
                ca.fingerprint(hashes.SHA256()).hex()[:16],
                ca.not_valid_after_utc.date().isoformat(),
                f"{revoked.serial_number:x}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"test PKI written to {pki.root} (test keys only: never use in production)", ""]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += ["", "in each ADMIN/ directory (keys beside them as *.key.pem, mode 0600):"]
    lines += [f"  {name:<17} {role}" for name, role in ROLES]
    lines += [
        f"  {FOREIGN + '/':<17} a CA no administration trusts, and ADMIN-impostor.pem under it",
    ]
    return "\n".join(lines)


def trust_from_directory(root: Path) -> TrustStore:
    """Trust every administration of a test-PKI-layout directory (ADMIN/ca.pem, crl.pem).

    The I/O half of `gateway.trust.loading.trust_from_pki_files`, for `--trust-dir`.
    """
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory", location=str(root))
    files: dict[str, dict[str, bytes]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        contents = {}
        for name in ("ca.pem", "crl.pem"):
            path = sub / name
            try:
                if path.is_file():
                    contents[name] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {path}: {exc.strerror}", location=str(path)
                ) from None
        files[sub.name] = contents
    return trust_from_pki_files(files)
