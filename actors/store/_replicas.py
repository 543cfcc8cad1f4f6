"""Replicas: the processes sharing a group's work (a sync step's objects) on one PostgreSQL.

Each process that joins a group holds a replica lock for it on the listener's
connection (see ``_listen``); the listener reports who holds them. Every object id
belongs to one replica, by rendezvous hash, so a replica that goes away hands its ids
to the others and no other id moves.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from actors.logs import get_logger

__all__ = ["Replicas"]

log = get_logger("actors.store")

_MASK64 = 2**64 - 1


class Replicas:
    """The groups this process is in, and the replicas of each as the listener last saw them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: Counter[str] = Counter()
        self._me: int | None = None  # this process's replica id
        self._members: dict[str, frozenset[int]] = {}
        self._before: dict[str, frozenset[int]] = {}  # each group's replicas before its last change
        #: Grows by one whenever the replicas of a group change.
        self.epoch = 0

    def join(self, group: str) -> None:
        """Count one join of ``group``."""
        with self._lock:
            self._groups[group] += 1

    def leave(self, group: str) -> None:
        """Undo one :meth:`join`; the group is left with the last one."""
        with self._lock:
            self._groups[group] -= 1
            if self._groups[group] <= 0:
                del self._groups[group]

    def wanted(self) -> frozenset[str]:
        """The groups joined (the listener holds a replica lock for each)."""
        with self._lock:
            return frozenset(self._groups)

    def on_members(self, me: int | None, members: dict[str, frozenset[int]]) -> None:
        """The listener's report: this process's replica id and each group's replicas."""
        for group in set(members) | set(self._members):
            if members.get(group) != self._members.get(group):
                self._before[group] = self._members.get(group, frozenset())
        self._me, self._members = me, members
        self.epoch += 1
        log.info("replicas", me=me, groups={group: len(ids) for group, ids in members.items()})

    def of(self, group: str) -> tuple[int | None, frozenset[int]]:
        """This process's replica id and the ids of the replicas in ``group``, itself included."""
        return self._me, self._members.get(group, frozenset())

    def spread(self, group: str, ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """``ids`` in the order this replica works on them: its own, the others' (see ``Store.spread``)."""
        ordered = sorted(ids)
        me, members = self.of(group)
        departed = self._before.get(group, frozenset()) - members
        if me is None or (len(members) < 2 and not departed):
            return ordered, []
        seeds = [(_mix(m), m) for m in members]
        before = [(_mix(m), m) for m in self._before.get(group, ())]
        inherited: list[int] = []
        mine: list[int] = []
        theirs: list[int] = []
        for id in ordered:
            if _owner(seeds, id) != me:
                theirs.append(id)
            elif departed and _owner(before, id) in departed:
                inherited.append(id)
            else:
                mine.append(id)
        theirs.reverse()
        return inherited + mine, theirs


def _owner(seeds: list[tuple[int, int]], id: int) -> int:
    """The replica of ``seeds`` (``(_mix(replica), replica)`` pairs) that ``id`` belongs to."""
    return max(seeds, key=lambda seed: _mix(seed[0] ^ id))[1]


def _mix(x: int) -> int:
    """A 64-bit integer hash (splitmix64's finaliser): every bit of ``x`` moves every bit out."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)
