"""Reading suites from disk (the I/O edge of model.parse_suite_file) and checking them against
the partner profile they test, before anything runs."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from gateway.conformance.model import Suite, SuiteFile, parse_suite_file, resolve_suite
from gateway.errors import (
    CNF_SUITE_INVALID,
    CNF_VERSION_MISMATCH,
    ConformanceError,
    GatewayError,
)
from gateway.partners.handling import load_handling_rules
from gateway.partners.profile import PartnerProfile, load_profile

__all__ = ["SUITE_FILE", "check_version", "load_suite", "suite_profile"]

SUITE_FILE = "suite.toml"


def _read_file(directory: Path) -> SuiteFile:
    path = directory / SUITE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(
            f"cannot read the suite: {exc.strerror or exc}",
            code=CNF_SUITE_INVALID,
            location=str(path),
        ) from None

    def read_fixture(_suite: str, name: str) -> bytes:
        return (directory / name).read_bytes()

    return parse_suite_file(text, str(path), directory.name, read_fixture)


def load_suite(directory: Path | str) -> Suite:
    """A partner suite directory with its includes, fully checked (file:line on any problem)."""
    root = Path(directory)
    main = _read_file(root)
    included = []
    seen = {root.resolve()}
    for name in main.includes:
        sub = (root / name).resolve()
        if sub in seen:
            raise ConformanceError(
                f"suite {name} is included twice", code=CNF_SUITE_INVALID, location=main.source
            )
        seen.add(sub)
        part = _read_file(sub)
        if part.includes:
            raise ConformanceError(
                f"{part.source} includes other suites: only one level of includes is allowed",
                code=CNF_SUITE_INVALID,
                location=main.source,
            )
        included.append(part)
    return _with_handling(root, resolve_suite(main, included))


def _with_handling(directory: Path, suite: Suite) -> Suite:
    """The suite with its UB3 handling rules loaded (and their text in its SHA-256)."""
    if suite.handling is None:
        return suite
    path = directory / suite.handling
    where = str(directory / SUITE_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(
            f"handling rules {path}: {exc.strerror or exc}", code=CNF_SUITE_INVALID, location=where
        ) from None
    try:
        rules = load_handling_rules(text, path.name)
    except GatewayError as error:
        raise ConformanceError(
            f"handling rules {path} are invalid: {error}", code=CNF_SUITE_INVALID, location=where
        ) from None
    if rules.administration is not suite.partner:
        raise ConformanceError(
            f"handling rules {path} are for {rules.administration.value}, the suite for "
            f"{suite.partner.value}",
            code=CNF_SUITE_INVALID,
            location=where,
        )
    digest = hashlib.sha256(suite.sha256.encode())
    digest.update(hashlib.sha256(text.encode()).digest())
    return replace(suite, rules=rules, sha256=digest.hexdigest())


def suite_profile(directory: Path | str, suite: Suite) -> PartnerProfile:
    """The partner profile the suite names (relative to its directory)."""
    if suite.profile is None:
        raise ConformanceError(
            f"suite {suite.name} names no profile: give --config with the partner's profile",
            code=CNF_SUITE_INVALID,
            location=str(Path(directory) / SUITE_FILE),
        )
    path = Path(directory) / suite.profile
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(
            f"profile {path}: {exc.strerror or exc}",
            code=CNF_SUITE_INVALID,
            location=str(Path(directory) / SUITE_FILE),
        ) from None
    try:
        return load_profile(text, str(path))
    except GatewayError as error:
        raise ConformanceError(
            f"profile {path} is invalid: {error}",
            code=CNF_SUITE_INVALID,
            location=str(Path(directory) / SUITE_FILE),
        ) from None


def check_version(suite: Suite, profile: PartnerProfile) -> None:
    """A suite tests one agreement version: the profile's. Refuse before anything runs."""
    if profile.administration is not suite.partner:
        raise ConformanceError(
            f"suite {suite.name} is for {suite.partner.value}, the profile {profile.source} is "
            f"for {profile.administration.value}",
            code=CNF_VERSION_MISMATCH,
            location=suite.name,
        )
    if profile.agreement.version != suite.version:
        raise ConformanceError(
            f"suite {suite.name} is at version {suite.version!r}, the profile {profile.source} "
            f"at agreement version {profile.agreement.version!r}: update the suite (or run the "
            "suite of that version)",
            code=CNF_VERSION_MISMATCH,
            location=suite.name,
        )
