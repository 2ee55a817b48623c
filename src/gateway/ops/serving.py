"""What `gncgw serve` runs for its operators: the store monitor and the metrics endpoint.

Started before the listeners (so /healthz answers and /readyz says "not up yet" while they
start), told when they are up, and stopped last but one (before the store is closed).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.node import GatewayNode
from gateway.ops.health import DEFAULT_INTERVAL, ReadinessCheck, StoreMonitor
from gateway.ops.http import OpsHttpServer


class Operations:
    """The store monitor (always) and `[metrics] listen`'s HTTP endpoint (when configured)."""

    def __init__(
        self,
        config: GatewayConfig,
        node: GatewayNode,
        *,
        monitor_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        probe = node.inbox.is_usable
        self.monitor = StoreMonitor(probe, interval=monitor_interval)
        self.readiness = ReadinessCheck(probe)
        self.http: OpsHttpServer | None = None
        if config.metrics.listen is not None:
            host, port = config.metrics.listen
            try:
                self.http = OpsHttpServer(
                    node.metrics.registry,
                    self.readiness,
                    host=host,
                    port=port,
                    administration=config.administration.value,
                )
            except ConfigError as error:
                raise ConfigError(
                    f"config error: metrics.listen: {error.message}", location=str(config.path)
                ) from None

    def start(self) -> None:
        self.monitor.start()
        if self.http is not None:
            self.http.start()  # logs its listening line

    def on_store_change(self, listener: Callable[[], object]) -> None:
        """e.g. the gRPC health servicer's refresh: Watch streams hear of a lost store."""
        self.monitor.on_change(listener)

    def listeners_up(self) -> None:
        self.readiness.listeners_up()

    def stop(self) -> None:
        self.readiness.stopping()
        self.monitor.stop()
        if self.http is not None:
            self.http.stop()


__all__ = ["Operations"]
