"""The operations HTTP endpoint of `gncgw serve` (`[metrics] listen`): plain HTTP, no TLS.

* ``GET /metrics``: the node's Prometheus registry (prometheus_client's WSGI app: text format,
  OpenMetrics when the scraper asks for it, gzip when it accepts it);
* ``GET /healthz``: liveness, 200 while the process serves HTTP (a restart would not fix an
  unreachable database, so liveness does not depend on it);
* ``GET /readyz``: readiness, 200 when the store is usable and the listeners are up, else 503
  with ``{"status": "NOT_READY", "reasons": [...]}``.

It is meant for a loopback or management-network address that Prometheus and the orchestrator
reach; it serves no exchange data and takes no input.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from gateway.errors import ConfigError
from gateway.ops.health import Readiness

log = logging.getLogger("gateway.ops.http")

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape (every 15 s per Prometheus server)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _json(start_response: StartResponse, status: str, body: dict[str, object]) -> list[bytes]:
    data = (json.dumps(body) + "\n").encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


class OpsHttpServer:
    """Serves /metrics, /healthz and /readyz for one node on a thread of its own."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        administration: str = "",
    ) -> None:
        self._metrics_app = make_wsgi_app(registry)
        self._readiness = readiness
        self._administration = administration
        self.host = host
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, self._app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc}",
                location="metrics.listen",
            ) from None
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-http", daemon=True
        )
        self._thread.start()
        log.info("metrics and health listening on %s%s", self.url, METRICS_PATH)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == METRICS_PATH:
            answer: Iterable[bytes] = self._metrics_app(environ, start_response)
            return answer
        if path == HEALTH_PATH:
            return _json(
                start_response,
                "200 OK",
                {"status": "ALIVE", "administration": self._administration},
            )
        if path == READY_PATH:
            readiness = self._readiness()
            if readiness.ready:
                return _json(start_response, "200 OK", {"status": "READY"})
            return _json(
                start_response,
                "503 Service Unavailable",
                {"status": "NOT_READY", "reasons": list(readiness.reasons)},
            )
        return _json(
            start_response,
            "404 Not Found",
            {"error": f"no resource {path!r}", "paths": [METRICS_PATH, HEALTH_PATH, READY_PATH]},
        )


__all__ = ["HEALTH_PATH", "METRICS_PATH", "READY_PATH", "OpsHttpServer"]
