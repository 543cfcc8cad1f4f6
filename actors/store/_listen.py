"""Change notices across processes on PostgreSQL: ``NOTIFY`` on commit, ``LISTEN`` in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from actors.logs import get_logger

__all__ = ["CHANNEL", "PostgresListener"]

log = get_logger("actors.store")

#: The channel every write notifies (in its transaction, so only on commit).
CHANNEL = "actors_changes"


class PostgresListener:
    """Calls ``on_wake()`` from its own thread whenever any process committed a write.

    It holds one connection of ``engine`` in autocommit mode, listening on
    :data:`CHANNEL`; on a lost connection it reconnects and wakes once, so the
    reader catches up with whatever it missed.
    """

    def __init__(self, engine: sa.Engine, on_wake: Callable[[], None], *, poll: float = 1.0) -> None:
        self._engine = engine
        self._on_wake = on_wake
        self._poll = poll
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actors-pg-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._poll * 3)

    def _run(self) -> None:
        while not self._stopped.is_set():
            raw: Any = None
            try:
                raw = self._engine.raw_connection()
                conn = raw.driver_connection
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                self._on_wake()  # whatever happened before we listened
                while not self._stopped.is_set():
                    if any(True for _ in conn.notifies(timeout=self._poll, stop_after=1)):
                        # Drain the burst, then read the journal once.
                        for _ in conn.notifies(timeout=0.001):
                            pass
                        self._on_wake()
            except Exception as exc:  # reconnect: the store may be restarting
                if not self._stopped.is_set():
                    log.warning("change listener lost its connection", error=repr(exc))
                    self._stopped.wait(self._poll)
            finally:
                if raw is not None:
                    try:
                        raw.close()
                    except Exception:
                        pass
