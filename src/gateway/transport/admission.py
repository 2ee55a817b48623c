"""What one partner may hold of a listener at once, so that no partner can starve the others.

A gRPC Stream holds a thread of the server's pool for its whole life, and the batches it has
read but not yet answered hold memory. Without bounds, one partner (or one client leaking
streams) could take every thread, health checks included, or push the process out of memory
with batches each within the limits. `StreamSlots` bounds the streams open per TLS peer and in
all (leaving threads for unary calls, health checks and inquiries); `ByteBudget` bounds the
envelope bytes read from all streams and not yet answered (a stream's reader waits for room,
which is back-pressure on its sender, not a refusal).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gateway.model.codes import Administration


class StreamSlots:
    """Open streams, per TLS peer and in all."""

    def __init__(self, *, per_peer: int, total: int) -> None:
        if per_peer < 1 or total < 1:
            raise ValueError("stream limits must be positive")
        self.per_peer = per_peer
        self.total = total
        self._lock = threading.Lock()
        self._open: dict[Administration | None, int] = {}

    def take(self, peer: Administration | None) -> str:
        """Count a new stream of `peer`; why it is refused ("" when it is not)."""
        with self._lock:
            held = self._open.get(peer, 0)
            if sum(self._open.values()) >= self.total:
                return f"{self.total} streams are open, the most this gateway serves at once"
            if held >= self.per_peer:
                who = peer.value if peer is not None else "this client"
                return f"{who} has {held} streams open, the most one partner may hold"
            self._open[peer] = held + 1
            return ""

    def give(self, peer: Administration | None) -> None:
        with self._lock:
            left = self._open.get(peer, 0) - 1
            if left > 0:
                self._open[peer] = left
            else:
                self._open.pop(peer, None)

    def open_streams(self) -> int:
        with self._lock:
            return sum(self._open.values())


class ByteBudget:
    """Bytes held across all streams; `take` waits for room while `alive()` holds."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the byte budget must be positive")
        self.limit = limit
        self._held = 0
        self._room = threading.Condition()

    def take(self, size: int, alive: Callable[[], bool], poll: float = 0.5) -> bool:
        """Hold `size` bytes once they fit (a size above the limit waits for an empty budget,
        so it cannot wait for ever); False if `alive()` turned false first."""
        with self._room:
            while self._held and self._held + size > self.limit:
                if not alive():
                    return False
                self._room.wait(poll)
            self._held += size
            return True

    def give(self, size: int) -> None:
        with self._room:
            self._held -= size
            self._room.notify_all()

    @property
    def held(self) -> int:
        with self._room:
            return self._held
