"""Work `gncgw serve` does on a clock: the daily full AEO list, and the retention purge.

The full list: each partner's full AEO list is queued again when its profile's
`ub1.full_list_interval_hours` has passed since the last one (and at once if none was ever sent),
so the partner can prove every day, by the reconciliation summary, that it holds our list.
Nodes sharing one PostgreSQL database each run the schedule; one at a time checks and queues
(a session advisory lock, `FULL_LIST_LOCK`), so the list goes out once per interval, not once
per node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

from gateway.errors import GatewayError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.services.aeo import AeoService, SyncResult
from gateway.store.database import Dialect
from gateway.store.outbox import SqliteOutbox
from gateway.translate.aeo_exchange import MessageType

log = logging.getLogger("gateway.services.schedule")

FULL_LIST_LOCK = 0x676E635F66756C6C  # "gnc_full": one node at a time checks and queues


class Periodic:
    """Runs an action now and then every `seconds` on a thread of its own, until stopped."""

    def __init__(self, name: str, action: Callable[[], object], seconds: float) -> None:
        self.name = name
        self.action = action
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.action()
            except GatewayError as error:
                log.error("%s: %s", self.name, error)
            self._stop.wait(self.seconds)


class FullListSchedule:
    def __init__(
        self,
        service: AeoService,
        outbox: SqliteOutbox,
        *,
        clock: Callable[[], datetime] = utc_now,
        check_seconds: float = 60.0,
    ) -> None:
        self.service = service
        self.outbox = outbox
        self.clock = clock
        self._periodic = Periodic("full-list-schedule", self.run_once, check_seconds)

    def due(self, now: datetime) -> list[Administration]:
        """Partners whose full list is due: none queued yet, or the last is an interval old."""
        out = []
        for code, partner in self.service.partners.items():
            interval = partner.profile.ub1_rules().full_list_interval
            last = self.outbox.last_enqueued(code, MessageType.FULL_LIST_END.value)
            if last is None or now - last >= interval:
                out.append(code)
        return out

    @contextlib.contextmanager
    def _turn(self) -> Iterator[bool]:
        """Whether this node may check and queue now: always on SQLite; on PostgreSQL while it
        holds FULL_LIST_LOCK (a session lock on this thread's reader: a node that dies drops it
        with its connection). The holder finishes queueing before it lets go, so the next node
        to check sees that list's end and finds nothing due."""
        database = self.outbox.database
        if database.dialect is not Dialect.POSTGRESQL:
            yield True
            return
        conn = database.reader()
        held = bool(conn.execute(f"SELECT pg_try_advisory_lock({FULL_LIST_LOCK})").fetchone()[0])
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(GatewayError):
                    conn.execute(f"SELECT pg_advisory_unlock({FULL_LIST_LOCK})")

    def run_once(self) -> list[SyncResult]:
        with self._turn() as mine:
            return self._queue_due() if mine else []

    def _queue_due(self) -> list[SyncResult]:
        results = []
        for code in self.due(self.clock()):
            try:
                result = self.service.full_sync(code)
            except GatewayError as error:
                log.error("full list for %s not queued: %s", code.value, error)
                continue
            log.info(
                "full list %s for %s queued: %d records in %d part(s)",
                result.sync_id,
                code.value,
                result.records,
                result.parts,
            )
            results.append(result)
        return results

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
