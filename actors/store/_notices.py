"""Change notices: what every committed write publishes to in-process subscribers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from actors.logs import get_logger

__all__ = ["ChangeNotice", "Notifier", "Unsubscribe"]

log = get_logger("actors.store")

Unsubscribe = Callable[[], None]


@dataclass(frozen=True)
class ChangeNotice:
    """One committed write.

    ``model`` is the object's leaf model; ``kind`` is ``create``, ``update``,
    ``delete`` (soft delete) or ``purge`` (row gone). ``seq`` grows by one per
    write in the store's journal, so a reader can resume after the last it saw.
    """

    seq: int
    model: str
    id: int
    kind: str
    at: float
    #: Who wrote, when the writer named itself (``WriteContext.origin``): an actor
    #: ignores the notices of its own status writes.
    origin: str | None = None


class Notifier:
    """Fan-out of notices to subscriber callbacks, called in the writer's thread.

    Callbacks must be quick and must not raise (an actor's ``tell`` is ideal);
    one that raises is logged and kept. A callback with a ``many`` attribute is given
    the notices of a commit of several writes (a batch) at once, as a list, through
    ``callback.many(notices)``: one message for the change-feed actor instead of one
    per write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[ChangeNotice], None]] = []

    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        with self._lock:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def publish(self, notices: list[ChangeNotice]) -> None:
        """Give every subscriber ``notices`` (one commit's), in order."""
        for callback in self._subscribers:
            many = getattr(callback, "many", None) if len(notices) > 1 else None
            if many is not None:
                try:
                    many(notices)
                except Exception as exc:  # a broken subscriber must not fail the write
                    log.error("change subscriber failed", error=repr(exc), notices=len(notices))
                continue
            for notice in notices:
                try:
                    callback(notice)
                except Exception as exc:
                    log.error("change subscriber failed", error=repr(exc), notice=str(notice))
