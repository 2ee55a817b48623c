"""Readiness follows a PostgreSQL store that goes away and comes back (issue 7, item 5 and
"database unreachable mid-run ... recovery when it returns").

A real `gncgw serve` on a fresh database of the test server; the database is then closed to
connections (ALLOW_CONNECTIONS false, its sessions terminated), which is what the node sees when
the server is unreachable, without stopping the server other tests share. /readyz must answer
503 and `gnc_store_up` 0 while it is closed, and both must recover once it is open again.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from ops_serve import http_get, scrape, serve, value, wait_until, write_config
from store_engines import fresh_postgres_database, postgres_server

from gateway import testpki


def _set_connections(database_url: str, allowed: bool) -> None:
    name = database_url.rpartition("/")[2]
    with psycopg.connect(postgres_server(), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(allowed).lower()}")
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_readiness_fails_while_the_database_is_unreachable_and_recovers(
    tmp_path: Path, pki: testpki.TestPki
) -> None:
    with fresh_postgres_database() as url:
        config = write_config(tmp_path, pki, extra='\n[metrics]\nlisten = "127.0.0.1:0"\n')
        config.write_text(config.read_text().replace('url = "sqlite:///eu.db"', f'url = "{url}"'))
        try:
            with serve(config) as served:
                ready = f"{served.metrics_url}/readyz"
                wait_until(lambda: http_get(ready)[0] == 200, "ready on a live database")
                assert value(scrape(served.metrics_url), "gnc_store_up") == 1

                _set_connections(url, allowed=False)
                wait_until(lambda: http_get(ready)[0] == 503, "not ready while unreachable")
                status, body = http_get(ready)
                answer = json.loads(body)
                assert status == 503 and answer["status"] == "NOT_READY", body
                assert "the message store is unusable" in answer["reasons"], body
                assert value(scrape(served.metrics_url), "gnc_store_up") == 0

                _set_connections(url, allowed=True)
                wait_until(lambda: http_get(ready)[0] == 200, "ready again once it is back")
                assert value(scrape(served.metrics_url), "gnc_store_up") == 1
        finally:
            _set_connections(url, allowed=True)  # so the fixture can drop it
