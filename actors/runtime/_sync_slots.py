"""The sync-step actor's worker slots: K workers, one object queued behind a busy one, withdrawal.

With ``concurrency`` K > 1 the step actor hands objects to K worker actors
(``Work``) and hears back (``WorkDone``). A worker whose handler began just now may
get one more object queued behind it, so that no slot stands idle while the actor
hears back; one left waiting too long is withdrawn (``Withdraw``) and given to another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import replace
from typing import Any

import pykka

from actors.store import Row

from ._child import ChildContext, tell_quietly
from ._deps import Key
from ._queue import Item
from ._sync_claims import ClaimsAhead
from ._workers import ACTOR
from .clock import RealClock
from .messages import Withdraw, Work

__all__ = ["AHEAD_WINDOW", "TYPICAL_WEIGHT", "WorkerSlots"]

#: When every worker is busy, a step with no rate limit may queue one more object behind the
#: one a worker runs: the worker goes on to it without waiting for this actor to hear from it
#: and answer (no slot stands idle between two objects). Only behind a handler that began less
#: than this many seconds ago, while handlers take less than this on average; an object still
#: waiting that long behind one is withdrawn and given to another worker (see ``Withdraw``).
#: Real time: it is about threads waiting, not about the objects' schedule.
AHEAD_WINDOW = 0.25
#: The weight of the last handler's time in ``SyncStepActor.typical``.
TYPICAL_WEIGHT = 0.1
_REAL_TIME = RealClock()


class WorkerSlots(ClaimsAhead):
    """A queue actor handing its objects to K worker actors, by slot."""

    def __init__(self, ctx: ChildContext, models: list[str]) -> None:
        super().__init__(ctx, models)
        #: The workers (concurrency > 1), by slot - 1; how many Works each has (at most 2); the
        #: slots of the idle ones, and of those running one (longest first); objects handed out
        #: (until their status is committed): the item and its refusal count; objects changed
        #: again meanwhile.
        self.workers: list[pykka.ActorRef[Any]] = []
        self.load: list[int] = []
        self.idle: list[int] = []
        self.running_one: deque[int] = deque()
        #: Per slot: when its worker began the object it runs (``time.monotonic``, as this actor
        #: sees it); the Work queued behind it, when it was queued; the average handler time.
        self.began: list[float] = []
        self.behind: dict[int, tuple[Work, float]] = {}
        self.typical = 0.0
        #: Objects are queued behind busy workers (AHEAD_WINDOW): the step actor turns it off for a
        #: rate limit, whose token is taken when an object is handed out.
        self.queue_ahead = True
        self.in_flight: dict[Key, tuple[Item, int]] = {}
        self.again: dict[Key, Item] = {}
        #: Works sent once the drain's commit has stored their objects' ``backend_need_delete``.
        self.outbox: list[tuple[pykka.ActorRef[Any], Work]] = []

    def _dispatch(self, key: Key, item: Item, row: Row, refusals: int) -> None:
        """Hand the object to a worker; one lacking ``backend_need_delete`` gets it in the drain's batch.

        Its Work then waits for the commit (:meth:`commit_batch`): the mark is stored before
        the handler runs. On a shared backend the Work takes the drain's claim on the object
        with it, held until its status is committed (``ClaimsAhead._hand_claim``).
        """
        slot = self._next_slot()
        if slot is None:  # the busy workers' handlers began too long ago since may_drain said yes
            self.queue[key] = item
            self.queue.move_to_end(key, last=False)
            if refusals:
                self.refused[key] = refusals
            return
        self.in_flight[key] = (item, refusals)
        work = Work(key, item.model, row, self.actor_ref, claim=self._hand_claim(key))
        if self.load[slot - 1]:
            work = replace(work, ticket=threading.Lock())
            self.behind[slot] = (work, time.monotonic())
            self._arm_withdraw()
        self._take_slot(slot)
        worker = self.workers[slot - 1]
        if self.batch is None or row.get("deleted") or row.get("backend_need_delete"):
            self._send(worker, work)
            return
        self.write_status(item.model, key[1], {"backend_need_delete": True})
        self.outbox.append((worker, work))

    def _send(self, worker: pykka.ActorRef[Any], work: Work) -> None:
        """Send the Work; one a dead worker (a replaced step's) never got leaves its claim to this actor."""
        try:
            worker.tell(work)
        except pykka.ActorDeadError:
            if work.claim is not None:
                work.claim.settle(ACTOR)
            raise

    def _give_up_work(self) -> None:
        """The actor stops: the claims of Works never sent or never begun are its own; the others'
        go with their handlers (see ``ClaimsAhead._give_up_claims``)."""
        outbox, self.outbox = self.outbox, []
        for _worker, work in outbox:
            if work.claim is not None:
                work.claim.settle(ACTOR)
        behind, self.behind = self.behind, {}
        for work, _queued in behind.values():
            if work.claim is not None and work.ticket.acquire(blocking=False):
                work.claim.settle(ACTOR)  # its worker will answer "withdrawn", never touching it
        self._give_up_claims()

    def _next_slot(self) -> int | None:
        """The worker for the next Work: an idle one, else one whose handler began just now (or none)."""
        if self.idle:
            return self.idle[-1]
        if not self.queue_ahead or self.typical >= AHEAD_WINDOW:
            return None
        now = time.monotonic()
        return next((slot for slot in self.running_one if now - self.began[slot - 1] < AHEAD_WINDOW), None)

    def _take_slot(self, slot: int) -> None:
        if self.load[slot - 1]:
            self.running_one.remove(slot)
        else:
            self.idle.remove(slot)
            self.began[slot - 1] = time.monotonic()
            self.running_one.append(slot)
        self.load[slot - 1] += 1

    def _free_slot(self, slot: int) -> None:
        """Worker ``slot`` ended a Work (or skipped a withdrawn one): the Work behind it, if any, runs now."""
        if not 1 <= slot <= len(self.workers) or not self.load[slot - 1]:
            return
        now = time.monotonic()
        self.typical += TYPICAL_WEIGHT * (now - self.began[slot - 1] - self.typical)
        self.began[slot - 1] = now
        self.behind.pop(slot, None)
        load = self.load[slot - 1] = self.load[slot - 1] - 1
        if load:
            self.running_one.append(slot)
        else:
            with suppress(ValueError):
                self.running_one.remove(slot)
            self.idle.append(slot)

    def _arm_withdraw(self) -> None:
        if "withdraw" not in self._timers:
            ref = self.actor_ref
            self._timers["withdraw"] = _REAL_TIME.call_later(
                AHEAD_WINDOW, lambda: tell_quietly(ref, Withdraw())
            )

    def on_withdraw(self, _message: Withdraw) -> None:
        """Objects queued too long behind a busy worker go back to the front of the queue (if not begun)."""
        self._timers.pop("withdraw", None)
        now = time.monotonic()
        for slot, (work, queued) in list(self.behind.items()):
            if now - queued < AHEAD_WINDOW:
                continue
            del self.behind[slot]
            if not work.ticket.acquire(blocking=False) or work.key not in self.in_flight:
                continue  # its worker began it
            item, refusals = self.in_flight.pop(work.key)
            self._claim_back(work.key)  # let go at the next drain's end (which may claim it again)
            again = self.again.pop(work.key, None)
            self.queue[work.key] = item if again is None else Item(again.model)
            self.queue.move_to_end(work.key, last=False)
            if refusals:
                self.refused[work.key] = refusals
            # The worker keeps the slot until it answers "withdrawn" (after the call it is in).
        if self.behind:
            self._arm_withdraw()
        self.update_depth()
        self.ensure_drain()
        self._release_unless_draining()
