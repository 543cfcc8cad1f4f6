"""The sync-step actor: one per ``SyncStep``, runs ``sync_record`` / ``delete_record``.

It keeps a queue of objects to look at, keyed by ``(root model, id)``, fed by the
dirty-set queries (on start, after a restart, periodically) and by change notices.
Objects are taken from the queue a batch per :class:`Drain` message, so the actor
stays responsive between objects. An object in backoff waits on a timer; an object
whose dependencies are not enacted waits for a notice about them.

With ``concurrency`` 1 (the default) the actor runs each handler itself, one object
at a time. With K > 1 it owns K :class:`~actors.runtime._workers.SyncWorker` actors
and hands each ready object to an idle one (:class:`Work`), hearing back by
:class:`WorkDone`: the queue, dependency waits, backoff and rate limit stay here.
A ``rate_limit`` takes one token per handler call (:class:`TokenBucket`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pykka

from actors.orm import ModelAccessor, ORMWrapper
from actors.steps import StepFactory, SyncStep
from actors.store import NotFound, Pending, Row

from ._child import ChildActor, ChildContext, StepExit
from ._deps import Dependencies, Key
from ._ratelimit import TokenBucket
from ._status import blocked_fields, register_of
from ._workers import SHARED, SyncWorker, claim, execute, still_pending
from .messages import Changed, Drain, RateReady, Resync, Wake, Work, WorkDone
from .settings import RuntimeSettings

__all__ = ["SyncStepActor"]

#: How long an object waits when another actor or replica holds it: the first retry,
#: doubling at each refusal up to LOCK_RETRY_MAX. A retry goes to the front of the queue.
LOCK_RETRY = 0.05
LOCK_RETRY_MAX = 1.0
#: A replica that reaches the other replicas' objects reads its dirty set again first
#: when its last read is older than this: most of those have been synced since.
THEIRS_REREAD = 1.0
#: At most this many objects, or this many seconds, per Drain message.
DRAIN_BATCH = 32
DRAIN_SECONDS = 0.05


@dataclass
class _Item:
    model: str
    row: Row | None = None
    since: float = 0.0  # when it entered the queue (time.monotonic), for the queue-duration metric


class SyncStepActor(ChildActor):
    kind = "sync"
    #: The actor class of the K workers (tests put a fake in its place).
    worker_class: Any = SyncWorker

    def __init__(self, ctx: ChildContext, factory: StepFactory) -> None:
        super().__init__(ctx)
        self.factory = factory
        self.step: SyncStep | None = None
        step_class: Any = factory.cls
        self.models: list[str] = step_class.observed_model_names()
        self.custom_fetch = getattr(factory.cls, "fetch_pending", None) is not SyncStep.fetch_pending
        self.deps = Dependencies(ctx.accessor, ctx.settings.dependency_graph)
        self.queue: OrderedDict[Key, _Item] = OrderedDict()
        self.deferred: dict[Key, tuple[float, _Item]] = {}
        self.waiting: dict[Key, set[Key]] = {}
        self.waiting_items: dict[Key, _Item] = {}
        #: Objects whose claim was refused: how many times in a row.
        self.refused: dict[Key, int] = {}
        #: The backend's ``replicas_epoch`` when the queue was last ordered (shared backends),
        #: when that was, and the queued objects that belong to other replicas.
        self.replicas_epoch: int | None = None
        self.spread_at = 0.0
        self.theirs: set[Key] = set()
        self.drain_scheduled = False
        #: True from the start: the start's Resync is owed (an IsIdle may come before it is sent).
        self.resync_scheduled = True
        self.timer_due: float | None = None
        self.limits = ctx.settings.limits(factory.name, factory.cls)
        rate = self.limits.rate_limit
        self.bucket = None if rate is None else TokenBucket(rate, self.limits.rate_burst, ctx.clock)
        #: True while the rate limit has no token (a RateReady timer is set).
        self.throttled = False
        #: The workers (concurrency > 1), by slot - 1; the idle ones; objects with one:
        #: the item and its refusal count; objects changed again meanwhile.
        self.workers: list[pykka.ActorRef[Any]] = []
        self.idle: list[pykka.ActorRef[Any]] = []
        self.in_flight: dict[Key, tuple[_Item, int]] = {}
        self.again: dict[Key, _Item] = {}
        self.handlers.update(
            {
                Changed: self.on_changed,
                Resync: self.on_resync,
                Drain: self.on_drain,
                Wake: self.on_wake,
                WorkDone: self.on_work_done,
                RateReady: self.on_rate_ready,
            }
        )

    @classmethod
    def interests(
        cls, factory: StepFactory, accessor: ModelAccessor, settings: RuntimeSettings
    ) -> frozenset[str]:
        """The models whose notices this actor needs: observed ones and their dependency neighbours."""
        step_class: Any = factory.cls
        models: list[str] = step_class.observed_model_names()
        deps = Dependencies(accessor, settings.dependency_graph)
        return frozenset(models) | frozenset(deps.models_involved(models))

    # -- life -----------------------------------------------------------------
    def on_start(self) -> None:
        super().on_start()
        if self.limits.concurrency > 1:
            self.workers = [
                self.worker_class.start(self.ctx, self.factory, slot, self.custom_fetch)
                for slot in range(1, self.limits.concurrency + 1)
            ]
            self.idle = list(reversed(self.workers))
        self._replica(True)
        self.actor_ref.tell(Resync("start"))

    def on_stop(self) -> None:
        self._stop_workers(wait=not self.stale)
        self._replica(False)
        super().on_stop()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._stop_workers(wait=False)
        self._replica(False)
        super().on_failure(exc_type, exc_value, traceback)

    def _stop_workers(self, wait: bool) -> None:
        """Stop the workers; on a clean stop wait (``shutdown_timeout``) for their handlers to end."""
        workers, self.workers, self.idle = self.workers, [], []
        futures = []
        for worker in workers:
            with suppress(pykka.ActorDeadError):
                futures.append(worker.stop(block=False))
        if not wait:
            return
        deadline = time.monotonic() + self.ctx.settings.shutdown_timeout
        for future in futures:
            with suppress(pykka.Timeout, pykka.ActorDeadError):
                future.get(timeout=max(0.0, deadline - time.monotonic()))

    def _replica(self, join: bool) -> None:
        """Join (or leave) the replicas sharing this step's work, on a shared backend."""
        backend = self.ctx.accessor.backend
        method = getattr(backend, "join" if join else "leave", None)
        if getattr(backend, "shared", False) and method is not None:
            method(self.ctx.name)

    def is_idle(self) -> bool:
        if self.queue or self.in_flight or self.drain_scheduled or self.resync_scheduled:
            return False
        now = self.ctx.clock.now()
        return all(due > now for due, _ in self.deferred.values())

    def _ensure_step(self) -> SyncStep:
        if self.step is None:
            self.step = self.make_step(self.factory)
        return self.step

    # -- messages -------------------------------------------------------------
    def on_resync(self, message: Resync) -> None:
        self.resync_scheduled = False
        step = self._ensure_step()
        accessor = self.ctx.accessor
        if message.reason in ("replicas", "theirs"):
            # Read afresh: rows of an earlier read may have been synced by another replica since.
            self.queue = OrderedDict((key, item) for key, item in self.queue.items() if item.row is None)
        if self.custom_fetch:
            for deleted in (False, True):
                for obj in self.call_user(step.fetch_pending, deleted) or ():
                    self._enqueue(self.deps.key(obj._model, obj.id), _Item(obj._model, dict(obj._data)))
        else:
            for model in self.models:
                for which in (Pending.SYNC, Pending.SYNC_DELETED):
                    for row in accessor.backend.pending(model, which):
                        self._enqueue(self.deps.key(model, row["id"]), _Item(model, row))
        # Objects waiting on others are looked at again too: a lost notice never strands them.
        for key, item in list(self.waiting_items.items()):
            self._enqueue(key, item)
        self.waiting.clear()
        self.waiting_items.clear()
        self._spread()
        if message.reason != "change":
            self._schedule_resync()
        self._ensure_drain()

    def _spread(self) -> None:
        """Order the queue for this replica on a shared backend (see ``Store.spread``)."""
        backend = self.ctx.accessor.backend
        spread = getattr(backend, "spread", None)
        if spread is None or not getattr(backend, "shared", False):
            return
        self.replicas_epoch = getattr(backend, "replicas_epoch", None)
        self.spread_at = self.ctx.clock.now()
        by_id: dict[int, list[Key]] = {}
        for key in self.queue:
            by_id.setdefault(key[1], []).append(key)
        mine, theirs = spread(self.ctx.name, by_id)
        self.theirs = {key for id in theirs for key in by_id[id]}
        self.queue = OrderedDict((key, self.queue[key]) for id in mine + theirs for key in by_id[id])
        self._update_depth()

    def on_changed(self, message: Changed) -> None:
        notice = message.notice
        schema = self.ctx.accessor.schema
        if notice.model not in schema:
            return
        key = self.deps.key(notice.model, notice.id)
        if notice.origin != self.ctx.name:
            self._wake_waiters(key)
        else:
            return  # our own status write
        if notice.kind == "purge":
            self.queue.pop(key, None)
            self.deferred.pop(key, None)
            self.refused.pop(key, None)
            self._update_depth()
            return
        model = next((m for m in self.models if schema.is_a(notice.model, m)), None)
        if model is None:
            return
        if self.custom_fetch:
            if not self.resync_scheduled:
                self.resync_scheduled = True
                self.actor_ref.tell(Resync("change"))
            return
        self.deferred.pop(key, None)
        if key in self.in_flight:
            self.again[key] = _Item(model)  # looked at again when its handler ends
            return
        self._enqueue(key, _Item(model))
        self._ensure_drain()

    def on_wake(self, _message: Wake) -> None:
        self.timer_due = None
        now = self.ctx.clock.now()
        for key, (due, item) in list(self.deferred.items()):
            if due <= now:
                del self.deferred[key]
                self._enqueue(key, item)
                if key in self.refused:
                    self.queue.move_to_end(key, last=False)
        self._arm_timer()
        self._ensure_drain()

    def on_drain(self, _message: Drain) -> None:
        """Process a few queued objects (a small batch keeps the mailbox responsive)."""
        self.drain_scheduled = False
        if self._replicas_changed():
            return
        started = time.monotonic()
        for _ in range(DRAIN_BATCH):
            if not self.queue or self.ctx.state.state == "stopping" or self.throttled:
                break
            if self.workers and not self.idle:
                break  # every slot busy: a WorkDone drains again
            key, item = self.queue.popitem(last=False)
            self.ctx.metrics.queued(self.ctx.name, item.since)
            if self._reread_theirs(key, item):
                return
            if key in self.in_flight:
                self.again[key] = item
                continue
            self._process(key, item)
            if time.monotonic() - started > DRAIN_SECONDS:
                break
        self._update_depth()
        self._ensure_drain()

    def _replicas_changed(self) -> bool:
        """True (and a fresh read asked for) when the replicas sharing the backend changed."""
        if self.replicas_epoch is None or self.resync_scheduled:
            return False
        if getattr(self.ctx.accessor.backend, "replicas_epoch", None) == self.replicas_epoch:
            return False
        self.resync_scheduled = True
        self.actor_ref.tell(Resync("replicas"))
        return True

    def _reread_theirs(self, key: Key, item: _Item) -> bool:
        """True (the item put back, a fresh read asked for) at another replica's object read long ago."""
        if key not in self.theirs or item.row is None or self.resync_scheduled:
            return False
        if self.ctx.clock.now() - self.spread_at < THEIRS_REREAD:
            return False
        self.queue[key] = item
        self.queue.move_to_end(key, last=False)
        self.resync_scheduled = True
        self.actor_ref.tell(Resync("theirs"))
        return True

    # -- queue ----------------------------------------------------------------
    def _enqueue(self, key: Key, item: _Item) -> None:
        if key in self.queue and item.row is not None and self.queue[key].row is None:
            return  # a pending re-read is fresher than a resync row
        item.since = self.queue[key].since if key in self.queue else time.monotonic()
        self.queue[key] = item
        self._update_depth()

    def _ensure_drain(self) -> None:
        if self.queue and not self.drain_scheduled and not self.throttled and (self.idle or not self.workers):
            self.drain_scheduled = True
            self.actor_ref.tell(Drain())

    def _update_depth(self) -> None:
        self.ctx.state.queue_depth = (
            len(self.queue) + len(self.deferred) + len(self.waiting_items) + len(self.in_flight)
        )

    def _defer(self, key: Key, item: _Item, due: float) -> None:
        self.deferred[key] = (due, _Item(item.model))
        self._update_depth()
        self._arm_timer()

    def _arm_timer(self) -> None:
        if not self.deferred:
            return
        due = min(d for d, _ in self.deferred.values())
        if self.timer_due is not None and self.timer_due <= due:
            return
        self.timer_due = due
        self.schedule("wake", due - self.ctx.clock.now(), Wake())

    def _schedule_resync(self) -> None:
        self.schedule("resync", self.ctx.settings.resync_period, Resync("period"))

    def _wait(self, key: Key, item: _Item, on: list[Key]) -> None:
        for dep in on:
            self.waiting.setdefault(dep, set()).add(key)
        self.waiting_items[key] = _Item(item.model)
        self._update_depth()

    def _wake_waiters(self, key: Key) -> None:
        for waiter in self.waiting.pop(key, ()):
            item = self.waiting_items.pop(waiter, None)
            if item is not None:
                self._enqueue(waiter, item)
        self._ensure_drain()

    # -- one object -----------------------------------------------------------
    def _process(self, key: Key, item: _Item) -> None:
        accessor = self.ctx.accessor
        refusals = self.refused.pop(key, 0)
        row = item.row if item.row is not None else accessor.backend.get(item.model, key[1])
        if row is None:
            return
        if not still_pending(row, self.custom_fetch):
            return
        now = self.ctx.clock.now()
        next_run = register_of(row).get("next_run") or 0
        if not self.ctx.settings.backoff_disabled and isinstance(next_run, int | float) and next_run > now:
            self._defer(key, item, float(next_run))
            return
        if self.workers:
            # The worker takes the locks and claim, and reads the row again if it claimed it.
            if not self._blocked(key, item, self._object(item, row)) and self._token(key, item, refusals):
                self.in_flight[key] = (item, refusals)
                self.idle.pop().tell(Work(key, item.model, row, self.actor_ref))
            return
        if not self.ctx.locks.try_acquire(key):
            self._refused(key, item, now, refusals)
            return
        try:
            with claim(accessor.backend, item.model, key[1]) as held:
                if not held:
                    self._refused(key, item, now, refusals)
                    return
                if held is SHARED:
                    # Another replica may have synced it between our read and our claim.
                    row = accessor.backend.get(item.model, key[1])
                    if row is None or not still_pending(row, self.custom_fetch):
                        return
                obj = self._object(item, row)
                if self._blocked(key, item, obj) or not self._token(key, item, refusals):
                    return
                try:
                    outcome, retry_at = execute(self, self._ensure_step(), item.model, row, obj)
                except StepExit:
                    self.ctx.state.failed += 1
                    raise
                self._ended(key, item, outcome, retry_at)
        except NotFound:
            pass  # purged while we worked on it
        finally:
            self.ctx.locks.release(key)

    def _refused(self, key: Key, item: _Item, now: float, refusals: int) -> None:
        """Someone else holds the object: look again soon, at the front of the queue."""
        self.refused[key] = refusals + 1
        self._defer(key, item, now + min(LOCK_RETRY * 2**refusals, LOCK_RETRY_MAX))

    def _token(self, key: Key, item: _Item, refusals: int) -> bool:
        """A token of the rate limit; without one the object goes back to the front and draining pauses."""
        if self.bucket is None:
            return True
        wait = self.bucket.take()
        if wait <= 0:
            return True
        self.queue[key] = item
        self.queue.move_to_end(key, last=False)
        if refusals:
            self.refused[key] = refusals
        self.throttled = True
        self.schedule("rate", wait, RateReady())
        return False

    def on_rate_ready(self, _message: RateReady) -> None:
        self.throttled = False
        self._ensure_drain()

    def _object(self, item: _Item, row: Row) -> ORMWrapper:
        return self.ctx.accessor.get_model_class(item.model)._from_row(row)

    def _blocked(self, key: Key, item: _Item, obj: ORMWrapper) -> bool:
        """True (the object set waiting) when what it depends on, or its dependents' deletes, are owed."""
        row = obj._data
        if row.get("deleted"):
            blockers = self.deps.undeleted_dependents(obj)
            if blockers:
                self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in blockers])
            return bool(blockers)
        unsynced = self.deps.unsynced_dependencies(obj)
        if not unsynced:
            return False
        failed = next(
            ((m, r) for m, r in unsynced if r.get("backend_code") == 2 and register_of(r).get("failures")),
            None,
        )
        if failed is not None:
            fields = blocked_fields(failed[0], failed[1]["id"], str(failed[1].get("backend_status") or ""))
            if row.get("backend_status") != fields["backend_status"]:
                self.write_status(item.model, row["id"], fields)
        self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in unsynced])
        return True

    def _ended(self, key: Key, item: _Item, outcome: str, retry_at: float | None) -> None:
        """The handler ended (its status written): count it, wake its waiters, schedule a retry."""
        if outcome == "done":
            self.ctx.state.done += 1
        else:
            self.ctx.state.failed += 1
            if retry_at is not None:
                self._defer(key, item, retry_at)
        self._wake_waiters(key)

    def on_work_done(self, message: WorkDone) -> None:
        """A worker ended an object: apply the outcome here, give the worker its next one."""
        if 1 <= message.slot <= len(self.workers):
            self.idle.append(self.workers[message.slot - 1])
        entry = self.in_flight.pop(message.key, None)
        if entry is None:
            return
        item, refusals = entry
        key = message.key
        if message.outcome == "refused":
            self._refused(key, item, self.ctx.clock.now(), refusals)
        elif message.outcome in ("done", "failed"):
            self._ended(key, item, message.outcome, message.retry_at)
        elif message.outcome == "exit":
            self.ctx.state.failed += 1
            raise StepExit(message.error or "step code exited")
        elif message.outcome == "error":
            raise RuntimeError(f"a worker of {self.ctx.name} failed: {message.error}")
        again = self.again.pop(key, None)
        if again is not None:  # changed while it ran: look again now (as a notice does)
            self.deferred.pop(key, None)
            self._enqueue(key, again)
        self._update_depth()
        self._ensure_drain()
