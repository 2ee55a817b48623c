"""Store health watched on a clock, and the readiness a load balancer asks about.

Health checks that answer only when asked (gRPC `Check`, XML `/healthz`, `/readyz`) probe the
store at query time. A gRPC `Watch` stream, though, is told only when the status is set again;
`StoreMonitor` probes every few seconds and calls its listeners (the gRPC health servicer's
`refresh`) when the answer flips, so a watcher hears NOT_SERVING when the store is lost and
SERVING when it is back, and the log says when each happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("gateway.ops.health")

DEFAULT_INTERVAL = 2.0  # seconds between probes of the store


class StoreMonitor:
    """Probes the store every `interval` seconds on a thread of its own, until stopped."""

    def __init__(
        self,
        probe: Callable[[], bool],
        *,
        interval: float = DEFAULT_INTERVAL,
        name: str = "message store",
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.probe = probe
        self.interval = interval
        self.name = name
        self._listeners: list[Callable[[], object]] = []
        self._usable: bool | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_change(self, listener: Callable[[], object]) -> None:
        """Call `listener` (no arguments) whenever the store's usability flips."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def usable(self) -> bool:
        """The last probe's answer (probing now if there was none yet)."""
        return self.check() if self._usable is None else self._usable

    def check(self) -> bool:
        """Probe now; tell the listeners and log if the answer changed."""
        try:
            usable = bool(self.probe())
        except Exception:  # a probe that fails says the store is not usable
            usable = False
        with self._lock:
            changed, self._usable = self._usable is not None and usable != self._usable, usable
            listeners = list(self._listeners) if changed else []
        if changed:
            if usable:
                log.warning("%s is usable again: serving", self.name)
            else:
                log.error("%s is unreachable: health checks answer NOT_SERVING", self.name)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("a health listener failed")
        return usable

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the store monitor is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="store-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.interval)


@dataclass(frozen=True)
class Readiness:
    """Whether the node should get traffic, and if not, why (for /readyz)."""

    ready: bool
    reasons: tuple[str, ...] = ()


class ReadinessCheck:
    """Ready while the store answers (probed at query time) and every listener is up."""

    def __init__(self, store_probe: Callable[[], bool]) -> None:
        self._store_probe = store_probe
        self._listening = threading.Event()
        self._stopping = threading.Event()

    def listeners_up(self) -> None:
        self._listening.set()

    def stopping(self) -> None:
        self._stopping.set()

    def __call__(self) -> Readiness:
        reasons: list[str] = []
        if self._stopping.is_set():
            reasons.append("the gateway is stopping")
        elif not self._listening.is_set():
            reasons.append("the listeners are not up yet")
        try:
            usable = bool(self._store_probe())
        except Exception:
            usable = False
        if not usable:
            reasons.append("the message store is unusable")
        return Readiness(not reasons, tuple(reasons))


__all__ = ["DEFAULT_INTERVAL", "Readiness", "ReadinessCheck", "StoreMonitor"]
