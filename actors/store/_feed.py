"""Change notices from every process: this one's after each commit, the others' from the listener.

On PostgreSQL a :class:`~actors.store._listen.PostgresListener` wakes the feed when any
process commits; the feed publishes the entries it has not published itself, from the
``NOTIFY`` payloads or, when those are not all known, by reading the journal after its
cursor. A wake by this store's own commits only reads nothing: the cursor moves past the
seqs it published itself. Sequence values can commit out of order (a writer takes its seq
before it commits): a seq passed over is a *gap*, looked up again at each wake for a while.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import sqlalchemy as sa

from ._journal import Journal
from ._listen import PostgresListener
from ._notices import ChangeNotice, Notifier

__all__ = ["ChangeFeed"]

#: How many locally published seqs are remembered (so the PostgreSQL listener does not
#: publish them again), and how many journal entries one catch-up query reads.
SEEN_KEEP = 100_000
CATCH_UP_BATCH = 1000
#: A seq that the journal skipped over may still commit (sequence values are taken
#: before the commit): it is looked up again at every wake for this long, at most
#: GAP_KEEP of them (a rolled-back write leaves a seq that never comes).
GAP_SECONDS = 60.0
GAP_KEEP = 10_000


class ChangeFeed:
    """Publishes committed writes to the subscribers of ``notifier``, each once."""

    def __init__(self, journal: Journal, notifier: Notifier) -> None:
        self._journal = journal
        self._notifier = notifier
        self._listener: PostgresListener | None = None
        self._lock = threading.Lock()
        self._cursor = 0
        self._gaps: dict[int, float] = {}  # seq -> when to stop looking for it
        self._seen_lock = threading.Lock()
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._seen_top = 0  # the highest seq published

    def listen(
        self,
        engine: sa.Engine,
        groups: Callable[[], frozenset[str]],
        on_members: Callable[[int | None, dict[str, frozenset[int]]], None],
        own_sessions: Callable[[], frozenset[int]] = frozenset,
    ) -> None:
        """Start the listener (once): other processes' writes, and the replicas of ``groups()``.

        ``own_sessions()``: the backend pids of this store's write connections, whose
        ``NOTIFY`` s the listener leaves unread (see :meth:`catch_up`).
        """
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._cursor = self._journal.last_seq()
                    self._listener = PostgresListener(
                        engine, self.catch_up, groups=groups, on_members=on_members, own_sessions=own_sessions
                    )

    def stop(self) -> None:
        """Stop the listener, if there is one."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def published(self, notices: list[ChangeNotice]) -> None:
        """Seqs published from this process, so the listener does not publish them twice.

        Called before the commit: the listener may wake right after it.
        """
        if self._listener is not None:
            with self._seen_lock:
                for notice in notices:
                    self._seen.add(notice.seq)
                    self._seen_order.append(notice.seq)
                    self._seen_top = max(self._seen_top, notice.seq)
                while len(self._seen_order) > SEEN_KEEP:
                    self._seen.discard(self._seen_order.popleft())

    def catch_up(self, delivered: list[ChangeNotice] | None = None, own: bool = False) -> None:
        """Publish the journal entries other processes wrote since the last look (PostgreSQL only).

        The cursor is the highest seq read, this process's own entries included, so a
        look reads only entries after it, in batches of :data:`CATCH_UP_BATCH`. A seq
        passed over is a gap, looked up again at each wake for :data:`GAP_SECONDS`.
        ``delivered``: the entries that committed since the last wake, as the listener
        got them (``NOTIFY`` payloads, in commit order); then nothing is read, and a gap
        is filled when its own payload comes. ``own``: this store's own commits woke the
        listener too (their entries it published itself, before each commit): the cursor
        moves past the highest seq published, and the seqs it passes over that were not
        published become gaps.
        """
        journal = self._journal.table
        with self._lock:
            if delivered is not None:
                for notice in delivered:
                    self._gaps.pop(notice.seq, None)
                top = max((n.seq for n in delivered), default=0)
                if own:
                    with self._seen_lock:
                        top = max(top, self._seen_top)
                self._advance({n.seq for n in delivered}, top, time.monotonic())
                self._publish(delivered)
                return
            now = time.monotonic()
            for seq in [seq for seq, until in self._gaps.items() if until <= now]:
                del self._gaps[seq]
            fresh: list[ChangeNotice] = []
            while True:
                after = journal.c.seq > self._cursor
                where = sa.or_(after, journal.c.seq.in_(list(self._gaps))) if self._gaps else after
                read = self._journal.read(where, CATCH_UP_BATCH)
                for notice in read:
                    self._gaps.pop(notice.seq, None)
                self._advance({n.seq for n in read}, read[-1].seq if read else 0, now)
                fresh.extend(read)
                if len(read) < CATCH_UP_BATCH:
                    break
            self._publish(fresh)

    def _publish(self, read: list[ChangeNotice]) -> None:
        """Publish the entries of ``read`` not published yet, each once.

        One entry may come twice in one wake: from the journal trigger's ``NOTIFY`` and
        from a writer that sends its own (a process of an older version).
        """
        unique = {n.seq: n for n in read}
        with self._seen_lock:
            news = [n for n in unique.values() if n.seq not in self._seen]
        self.published(news)
        self._notifier.publish(news)

    def _advance(self, got: set[int], top: int, now: float) -> None:
        """Move the cursor up to ``top``; the seqs it skips, neither in ``got`` nor published, are gaps."""
        if top <= self._cursor:
            return
        with self._seen_lock:
            for seq in range(max(self._cursor + 1, top - GAP_KEEP), top):
                if seq not in got and seq not in self._seen:
                    self._gaps[seq] = now + GAP_SECONDS
        while len(self._gaps) > GAP_KEEP:
            del self._gaps[next(iter(self._gaps))]
        self._cursor = top
