"""Helpers for tests that run `gncgw serve` as real processes and kill them: configuration files,
start/stop/SIGKILL with readiness by the gRPC health check, the node's output in every failure
message, a fresh PostgreSQL database per test, and a read-only view of a store to check what
survived. Written for tests/test_crash_safety.py and reusable for multi-node tests (two
`gncgw serve` processes on one PostgreSQL database: start two ServeProcess on two configs that
name the same store URL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loopback_gateways import free_port
from store_engines import fresh_postgres_database

from gateway import testpki
from gateway.transport.tls import ClientTls, channel_credentials

ROOT = Path(__file__).resolve().parent.parent
US_PROFILE = ROOT / "adapters" / "partners" / "us.toml"
POSTGRES_ENV = "GNC_TEST_POSTGRES_URL"


class Backend(StrEnum):
    """The store a crash test runs its gateways on."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


def postgres_store_landed() -> bool:
    """Whether this tree has the PostgreSQL store (issue 7, item 1): `gateway.store.database`."""
    try:
        __import__("gateway.store.database")
    except ImportError:
        return False
    return True


def require_backend(backend: Backend) -> None:
    """Skip (or, on CI once the PostgreSQL store exists, fail) when `backend` cannot run here."""
    if backend is Backend.SQLITE:
        return
    if not postgres_store_landed():
        pytest.skip("the PostgreSQL store (gateway.store.database) is not built yet")
    if not os.environ.get(POSTGRES_ENV):
        reason = f"{POSTGRES_ENV} is not set (`make test` starts a PostgreSQL server and sets it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must run the PostgreSQL crash tests")
        pytest.skip(reason)


@contextlib.contextmanager
def store_urls(backend: Backend, directory: Path, names: Sequence[str]) -> Iterator[list[str]]:
    """One store URL per name: an SQLite file in `directory`, or a fresh PostgreSQL database."""
    if backend is Backend.SQLITE:
        yield [f"sqlite:///{(directory / f'{name}.db').resolve()}" for name in names]
        return
    server = os.environ[POSTGRES_ENV]
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(fresh_postgres_database(server)) for _ in names]


def write_gateway_config(
    path: Path,
    pki: testpki.TestPki,
    own: str,
    partner: str,
    *,
    store_url: str,
    grpc_port: int,
    partner_endpoint: str,
    profile: Path | None = None,
    poll_seconds: float = 0.05,
) -> Path:
    """A gRPC-only gateway configuration for `own` with one gRPC partner."""
    profile_line = f'profile = "{profile}"\n' if profile else ""
    path.write_text(
        f"""{pki.gateway_table(own)}

[store]
url = "{store_url}"

[listen]
grpc = "127.0.0.1:{grpc_port}"

[delivery]
poll_seconds = {poll_seconds}

[[partners]]
administration = "{partner}"
binding = "grpc"
endpoint = "{partner_endpoint}"
ca = "{pki.path(partner, "ca")}"
crl = "{pki.path(partner, "crl")}"
{profile_line}"""
    )
    return path


def partner_tls(pki: testpki.TestPki, client: str, server: str) -> ClientTls:
    """`client`'s TLS identity towards `server`'s listener (for probes and load drivers)."""
    return ClientTls.from_files(
        pki.key_path(client, "tls"), pki.path(client, "tls"), pki.path(server, "ca")
    )


def _grpc_target(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("grpc = "):
            return line.split("=", 1)[1].split("#", 1)[0].strip().strip('"')
    raise ValueError(f"{config} has no [listen] grpc address")


class ServeProcess:
    """One `gncgw serve --config FILE` subprocess. Its output goes to `log` (appended across
    restarts), and every failure this class reports carries that output."""

    def __init__(self, config: Path, probe: ClientTls, *, log: Path | None = None) -> None:
        self.config = config
        self.probe = probe
        self.target = _grpc_target(config)
        self.log = log or config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def fail(self, message: str) -> None:
        """pytest.fail with the node's output appended."""
        pytest.fail(f"{message}\n--- output of gncgw serve --config {self.config} ---\n"
                    f"{self.output()}")  # fmt: skip

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start the node and wait until its gRPC health check answers SERVING."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("already running")
        self.starts += 1
        with self.log.open("ab") as sink:
            sink.write(f"=== start {self.starts} ===\n".encode())
            sink.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.secure_channel(self.target, channel_credentials(self.probe)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    code = self.proc.returncode if self.proc else None
                    self.fail(f"gncgw serve exited with {code} before it was ready")
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                except grpc.RpcError:
                    answer = None
                if answer is not None and answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.05)
        self.fail(f"gncgw serve was not SERVING on {self.target} within {timeout} s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed; what is durable survives."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.returncode != -signal.SIGKILL:
            self.fail(f"expected death by SIGKILL, got exit status {self.proc.returncode}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and a clean exit (status 0), or a failure naming what happened."""
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            self.fail(f"gncgw serve was not running at stop (exit status {code})")
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.fail(f"gncgw serve did not stop within {timeout} s of SIGTERM")
            return
        if code != 0:
            self.fail(f"gncgw serve exited with {code} after SIGTERM")

    def close(self) -> None:
        """Whatever state it is in: make sure the process is gone (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def gncgw(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a gncgw command to completion (stdout and stderr captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class StoreView:
    """Read-only SQL on a gateway's store (`?` placeholders on both backends), for checks made
    while the node runs (SQLite in WAL and PostgreSQL both let a reader in) or after it stopped.

    `insertion_order` is the expression that orders a table's rows by insertion on this backend.
    """

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            self.insertion_order = "rowid"
        elif url.startswith(("postgresql://", "postgresql+psycopg://")):
            self.insertion_order = "stored_at"
        else:
            raise ValueError(f"not a store URL this view reads: {url}")
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None

    def _connect(self) -> None:
        """On first use, so a view can be made before the node has created its store."""
        if self.url.startswith("sqlite:///"):
            path = unquote(self.url[len("sqlite:///") :])
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self._sqlite.execute("PRAGMA busy_timeout = 10000")
        else:
            import psycopg

            url = self.url.replace("postgresql+psycopg://", "postgresql://")
            self._pg = psycopg.connect(url, autocommit=True)
            self._pg.execute("SET default_transaction_read_only = on")

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self._sqlite is None and self._pg is None:
            self._connect()
        if self._sqlite is not None:
            found = self._sqlite.execute(sql, tuple(params)).fetchall()
        else:
            found = self._pg.execute(sql.replace("?", "%s"), tuple(params)).fetchall()
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in found]

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        (row,) = self.rows(sql, params)
        return row[0]

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def __enter__(self) -> StoreView:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


__all__ = [
    "POSTGRES_ENV",
    "ROOT",
    "US_PROFILE",
    "Backend",
    "ServeProcess",
    "StoreView",
    "free_port",
    "fresh_postgres_database",
    "gncgw",
    "partner_tls",
    "postgres_store_landed",
    "require_backend",
    "store_urls",
    "write_gateway_config",
]
