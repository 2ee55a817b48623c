"""Shared fixtures for the whole suite."""

from __future__ import annotations

import pytest

from gateway.testpki import TestPki, init_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A complete test PKI (every administration, plus FOREIGN), made once per test session.

    With pytest-xdist each worker is its own session and makes its own PKI. Treat it as
    read-only: tests that need to change certificates make a PKI of their own.
    """
    return init_test_pki(tmp_path_factory.mktemp("pki"))
