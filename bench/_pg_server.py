"""A PostgreSQL server for the benchmarks that need one, and fresh databases on it.

``GNC_BENCH_POSTGRES_URL`` (an admin database URL, e.g. ``postgresql://postgres@127.0.0.1:55432/
postgres``) names a running server to use. Without it, a private cluster is made in a temporary
directory (Debian's ``postgresql`` binaries, ``initdb`` + ``pg_ctl``, as the ``postgres`` OS user
when run as root, loopback only, trust authentication), used, then stopped and removed, so
``make bench`` runs from a clean machine.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV = "GNC_BENCH_POSTGRES_URL"


def _bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise SystemExit(f"no PostgreSQL binaries (apt-get install postgresql), and {ENV} unset")
    return Path(found[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server: GNC_BENCH_POSTGRES_URL's, or a private one."""
    given = os.environ.get(ENV)
    if given:
        yield given
        return
    binaries = _bin()
    directory = Path(tempfile.mkdtemp(prefix="gnc-bench-pg-"))
    run: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(directory, "postgres")
        run = ["runuser", "-u", "postgres", "--"]
    data, port = directory / "data", _free_port()
    try:
        subprocess.run(
            [*run, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-locale"],
            check=True, capture_output=True,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c unix_socket_directories= -p {port} "
            "-c max_connections=200"
        )
        subprocess.run(
            [*run, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
             "-w", "-s", "-o", options, "start"],
            check=True,
        )  # fmt: skip
        try:
            print(f"(a private PostgreSQL cluster on 127.0.0.1:{port} in {directory})", flush=True)
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*run, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-s",
                 "stop"],
                check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: str, prefix: str = "gnc_bench") -> Iterator[str]:
    """CREATE DATABASE on `server`; its URL; DROP it afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server.rpartition("/")[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
