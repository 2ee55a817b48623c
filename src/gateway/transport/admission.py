"""What one partner may hold of a listener at once, so that no partner can starve the others.

A gRPC Stream holds a thread of the server's pool for its whole life, and the batches it has
read but not yet answered hold memory; an XML connection holds a slot from accept, before
its handshake says who it is. Without bounds, one partner (or one client leaking
streams) could take every thread, health checks included, or push the process out of memory
with batches each within the limits. `Slots` bounds the gRPC streams open per TLS peer and in
all (leaving threads for unary calls, health checks and inquiries), and the XML listener's
connections per client address and in all; `ByteBudget` bounds the
envelope bytes read from all streams and not yet answered (a stream's reader waits for room,
which is back-pressure on its sender, not a refusal).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Slots(Generic[K]):
    """Things open at once (streams, connections), per holder and in all."""

    def __init__(self, *, per_holder: int, total: int, noun: str, holder: str) -> None:
        if per_holder < 1 or total < 1:
            raise ValueError(f"{noun} limits must be positive")
        self.per_holder = per_holder
        self.total = total
        self._noun = noun  # "streams"
        self._holder = holder  # "partner"
        self._lock = threading.Lock()
        self._open: dict[K, int] = {}

    def take(self, key: K, label: str) -> str:
        """Count one more for `key` (named `label` in a refusal); why it is refused, or ""."""
        with self._lock:
            held = self._open.get(key, 0)
            if sum(self._open.values()) >= self.total:
                return f"{self.total} {self._noun} are open, the most this gateway serves at once"
            if held >= self.per_holder:
                return f"{label} has {held} {self._noun} open, the most one {self._holder} may hold"
            self._open[key] = held + 1
            return ""

    def give(self, key: K) -> None:
        with self._lock:
            left = self._open.get(key, 0) - 1
            if left > 0:
                self._open[key] = left
            else:
                self._open.pop(key, None)

    def open_count(self) -> int:
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
