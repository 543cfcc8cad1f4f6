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
The workers leave their objects' status writes to this actor (in the ``WorkDone``):
each drain commits, in one transaction, the writes of every object that ended since
the last one and the ``backend_need_delete`` marks of the objects it hands out, then
sends those their ``Work`` and applies the outcomes of the ones that ended (counts,
retries, waking their dependents). An object stays in flight, never handed out
again, until its status is committed.
On a shared backend (PostgreSQL) the actor claims the objects of a drain ahead, as it
does with K = 1, and reads them afresh under their claims; a Work takes its object's
claim with it, held across drains until the drain that commits its status, which lets
it go with its other claims (one statement). A step that stops gives up the claims of
the objects its workers still run: each worker lets its own go when its call returns.
A ``rate_limit`` takes one token per handler call (:class:`TokenBucket`).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from itertools import islice
from typing import Any

import pykka

from actors._backoff import Backoff
from actors.orm import ModelAccessor, ORMWrapper, row_of
from actors.steps import StepFactory, SyncStep
from actors.store import BackendCode, NotFound, Pending, Row, as_dict, register_of

from ._child import ChildContext, StepExit
from ._deps import Dependencies, Key
from ._queue import Item
from ._ratelimit import TokenBucket
from ._settings import RuntimeSettings
from ._status import blocked_fields
from ._sync_slots import WorkerSlots
from ._workers import SHARED, SyncWorker, execute, still_pending
from .messages import Drain, RateReady, Resync, Withdraw, WorkDone

__all__ = ["SyncStepActor"]

#: How long an object waits when another actor or replica holds it: the first retry,
#: doubling at each refusal up to LOCK_RETRY_MAX. A retry goes to the front of the queue.
LOCK_RETRY = 0.05
LOCK_RETRY_MAX = 1.0
_LOCK_BACKOFF = Backoff(LOCK_RETRY, LOCK_RETRY_MAX)
#: A replica that reaches the other replicas' objects reads its dirty set again first
#: when its last read is older than this: most of those have been synced since.
THEIRS_REREAD = 1.0


class SyncStepActor(WorkerSlots):
    kind = "sync"
    #: The actor class of the K workers (tests put a fake in its place).
    worker_class: Any = SyncWorker

    def __init__(self, ctx: ChildContext, factory: StepFactory) -> None:
        step_class: Any = factory.cls
        super().__init__(ctx, step_class.observed_model_names())
        self.factory = factory
        self.step: SyncStep | None = None
        self.custom_fetch = getattr(factory.cls, "fetch_pending", None) is not SyncStep.fetch_pending
        self.deps = Dependencies(ctx.accessor, ctx.settings.dependency_graph)
        self.waiting: dict[Key, set[Key]] = {}
        self.waiting_items: dict[Key, Item] = {}
        #: The backend's ``replicas_epoch`` when the queue was last ordered (shared backends),
        #: when that was, and the queued objects that belong to other replicas.
        self.replicas_epoch: int | None = None
        self.spread_at = 0.0
        self.theirs: set[Key] = set()
        self.limits = ctx.settings.limits(factory.name, factory.cls)
        rate = self.limits.rate_limit
        self.bucket = None if rate is None else TokenBucket(rate, self.limits.rate_burst, ctx.clock)
        #: True while the rate limit has no token (a RateReady timer is set).
        self.throttled = False
        #: Objects are queued behind busy workers (AHEAD_WINDOW): not with a rate limit, whose
        #: token is taken when an object is handed out.
        self.queue_ahead = self.bucket is None
        #: Objects that ended in the drain under way: their waiters wake after the commit.
        self.ended: list[Key] = []
        #: Queued objects whose ``backend_need_delete`` mark is in the batch under way.
        self.marking: list[tuple[Key, Item]] = []
        #: Workers' replies whose status writes wait for the next drain's commit; those in it.
        self.done: list[WorkDone] = []
        self.committing: list[WorkDone] = []
        self.handlers.update(
            {WorkDone: self.on_work_done, RateReady: self.on_rate_ready, Withdraw: self.on_withdraw}
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
        if self.limits.concurrency > 1:
            self.workers = [
                self.worker_class.start(self.ctx, self.factory, slot)
                for slot in range(1, self.limits.concurrency + 1)
            ]
            self.load = [0] * len(self.workers)
            self.began = [0.0] * len(self.workers)
            self.idle = list(range(len(self.workers), 0, -1))
        self._replica(True)
        super().on_start()

    def on_receive(self, message: Any) -> Any:
        if type(message) is WorkDone and message.writes and self.stopping and not self.stale:
            self.done.append(message)  # stopping: no drain comes any more, committed at the stop
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._stop_workers(wait=not self.stale)
        self._commit_at_stop()
        self._give_up_work()
        self._replica(False)
        super().on_stop()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._stop_workers(wait=False)
        self._give_up_work()
        self._replica(False)
        super().on_failure(exc_type, exc_value, traceback)

    def _stop_workers(self, wait: bool) -> None:
        """Stop the workers; on a clean stop wait (``shutdown_timeout``) for their handlers to end."""
        workers, self.workers, self.idle, self.running_one = self.workers, [], [], deque()
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

    def _commit_at_stop(self) -> None:
        """Commit the status writes the workers left (a replaced actor's are dropped: synced again)."""
        done, self.done = self.done, []
        if self.stale or not done:
            return
        with self.batched():
            for message in done:
                for model, id, fields in message.writes:
                    self.write_status(model, id, dict(fields))
                if message.outcome == "done":
                    self.ctx.state.done += 1
                elif message.outcome == "failed":
                    self.ctx.state.failed += 1

    def _replica(self, join: bool) -> None:
        """Join (or leave) the replicas sharing this step's work, on a shared backend."""
        backend = self.ctx.accessor.backend
        method = getattr(backend, "join" if join else "leave", None)
        if getattr(backend, "shared", False) and method is not None:
            method(self.ctx.name)

    def is_idle(self) -> bool:
        return not self.in_flight and super().is_idle()

    def _ensure_step(self) -> SyncStep:
        if self.step is None:
            self.step = self.make_step(self.factory)
        return self.step

    # -- the queue's hooks ----------------------------------------------------
    def depth(self) -> int:
        return super().depth() + len(self.waiting_items) + len(self.in_flight)

    def may_drain(self) -> bool:
        return not self.throttled and (not self.workers or self._next_slot() is not None)

    def pending(self, reason: str) -> Iterator[tuple[Key, Item]]:
        step = self._ensure_step()
        if reason in ("replicas", "theirs"):
            # Read afresh: rows of an earlier read may have been synced by another replica since.
            self.queue = OrderedDict((key, item) for key, item in self.queue.items() if item.row is None)
        if self.custom_fetch:
            for deleted in (False, True):
                for obj in self.call_user(step.fetch_pending, deleted) or ():
                    yield self.deps.key(obj.model_name, obj.id), Item(obj.model_name, dict(row_of(obj)))
        else:
            backend = self.ctx.accessor.backend
            for model in self.models:
                for which in (Pending.SYNC, Pending.SYNC_DELETED):
                    for row in backend.pending(model, which):
                        yield self.deps.key(model, row["id"]), Item(model, row)
        # Objects waiting on others are looked at again too: a lost notice never strands them.
        waiting, self.waiting_items = self.waiting_items, {}
        self.waiting.clear()
        yield from waiting.items()

    def on_resync(self, message: Resync) -> None:
        super().on_resync(message)
        self._spread()

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
        self.update_depth()

    def noticed(self, key: Key) -> None:
        self._wake_waiters(key)

    def forget(self, key: Key) -> None:
        super().forget(key)
        self.refused.pop(key, None)

    def changed(self, key: Key, model: str, kind: str) -> None:
        if self.custom_fetch:
            self.request_resync("change")
            return
        if key in self.in_flight:
            self.deferred.pop(key, None)
            self.again[key] = Item(model)  # looked at again when its handler ends
            return
        super().changed(key, model, kind)

    def requeue(self, key: Key, item: Item) -> None:
        self.enqueue(key, item)
        if key in self.refused:
            self.queue.move_to_end(key, last=False)

    def on_drain(self, message: Drain) -> None:
        if self._replicas_changed():
            self.drain_scheduled = False
            self._release_unless_draining()
            return
        try:
            super().on_drain(message)  # its status writes are committed when it returns (or raises)
        finally:
            self._release_drain()
            self.deps.forget_ahead()

    def before_drain(self) -> None:
        """Mark the batch's new objects ``backend_need_delete`` in one commit, before any handler runs.

        ``execute`` stores that mark before ``sync_record`` of an object that lacks it;
        here the objects about to be handled in this drain get it together (most of them
        already have it from the drain before: see :meth:`after_drain`). Then the objects
        the batch depends on are read, together (``Dependencies.read_ahead``).
        """
        if self._mark_next():
            self.commit_batch()
        # The objects the batch's rows link to and depend on, read together (one SELECT per model).
        self.deps.read_ahead(
            (item.model, item.row)
            for item in islice(self.queue.values(), self.batch_size())
            if item.row is not None and self.deps.has_dependencies(item.model)
        )

    def after_drain(self) -> None:
        """Mark the next drain's new objects in this drain's commit: one commit per drain, not two."""
        self._mark_next()

    def _mark_next(self) -> bool:
        """Add the ``backend_need_delete`` mark of the next drain's new objects to the batch; any added?

        Only objects that run next for sure get it early: their row read, not deleted, not
        in backoff, not another replica's, of a model with no dependencies (one that may
        wait for others is marked by ``execute``, when its handler is about to run), with
        this actor running handlers itself and no rate limit. The rows queued get the mark
        once it is committed (:meth:`committed`).

        With workers, the status writes they left since the last drain join the batch
        instead (the marks of the objects handed out are written by :meth:`_dispatch`).
        """
        if self.workers:
            self._take_done()
            return False
        if self.bucket is not None:
            return False
        now = self.ctx.clock.now()
        for key, item in islice(self.queue.items(), self.batch_size()):
            row = item.row
            if row is None or row.get("deleted") or row.get("backend_need_delete") or key in self.theirs:
                continue
            if not still_pending(row, self.custom_fetch) or self.deps.has_dependencies(item.model):
                continue
            if self._backoff_until(row, now) is not None:
                continue
            self.write_status(item.model, key[1], {"backend_need_delete": True})
            self.marking.append((key, item))
        return bool(self.marking)

    def committed(self, failed: set[tuple[str, int]]) -> None:
        """The status writes are stored: marked rows say so, workers' outcomes apply, waiters go on."""
        marking, self.marking = self.marking, []
        for key, item in marking:
            if item.row is not None and (item.model, key[1]) not in failed:
                row = as_dict(item.row)
                row["backend_need_delete"] = True
                item.row = row
        finished, self.committing = self.committing, []
        for message in finished:
            self._finish(message)
        ended, self.ended = self.ended, []
        for key in ended:
            self._wake_waiters(key)

    def commit_batch(self) -> set[tuple[str, int]]:
        """Commit the batch; then the Works that waited for their objects' marks go to their workers."""
        failed = super().commit_batch()
        outbox, self.outbox = self.outbox, []
        for worker, work in outbox:
            if (work.model, work.key[1]) not in failed:  # else the worker writes the mark itself
                work = replace(work, row={**work.row, "backend_need_delete": True})
            self._send(worker, work)
        return failed

    def _take_done(self) -> None:
        """Put the status writes the workers left into the drain's batch (outcomes apply once committed)."""
        done, self.done = self.done, []
        for message in done:
            for model, id, fields in message.writes:
                self.write_status(model, id, dict(fields))
        self.committing.extend(done)

    def _replicas_changed(self) -> bool:
        """True (and a fresh read asked for) when the replicas sharing the backend changed."""
        if self.replicas_epoch is None or self.resync_owed:
            return False
        if getattr(self.ctx.accessor.backend, "replicas_epoch", None) == self.replicas_epoch:
            return False
        self.request_resync("replicas")
        return True

    def _reread_theirs(self, key: Key, item: Item) -> bool:
        """True (the item put back, a fresh read asked for) at another replica's object read long ago."""
        if key not in self.theirs or item.row is None or self.resync_owed:
            return False
        if self.ctx.clock.now() - self.spread_at < THEIRS_REREAD:
            return False
        self.queue[key] = item
        self.queue.move_to_end(key, last=False)
        self.request_resync("theirs")
        return True

    # -- dependencies ---------------------------------------------------------
    def _wait(self, key: Key, item: Item, on: list[Key]) -> None:
        for dep in on:
            self.waiting.setdefault(dep, set()).add(key)
        self.waiting_items[key] = Item(item.model)
        self.update_depth()

    def _wake_waiters(self, key: Key) -> None:
        for waiter in self.waiting.pop(key, ()):
            item = self.waiting_items.pop(waiter, None)
            if item is not None:
                self.enqueue(waiter, item)
        self.update_depth()
        self.ensure_drain()

    # -- one object -----------------------------------------------------------
    def process(self, key: Key, item: Item) -> bool:
        if self._reread_theirs(key, item):
            return False
        if key in self.in_flight:
            self.again[key] = item
            return True
        self._process(key, item)
        return True

    def _process(self, key: Key, item: Item) -> None:
        accessor = self.ctx.accessor
        refusals = self.refused.pop(key, 0)
        row = item.row if item.row is not None else accessor.backend.get(item.model, key[1])
        if row is None:
            return
        if not still_pending(row, self.custom_fetch):
            return
        now = self.ctx.clock.now()
        next_run = self._backoff_until(row, now)
        if next_run is not None:
            self.defer(key, item, next_run)
            return
        if self.workers:
            # The claim (on a shared backend) here, the worker takes this process's lock; the
            # claim goes with the Work, or at the drain's end if the object is not handed out.
            claimed = self._claimed_row(key, item, row, now, refusals)
            if claimed is None:
                return
            obj = self._object(item, claimed)
            if not self._blocked(key, item, obj) and self._token(key, item, refusals):
                self._dispatch(key, item, claimed, refusals)
            return
        if not self.ctx.locks.try_acquire(key):
            self._refused(key, item, now, refusals)
            return
        try:
            claimed = self._claimed_row(key, item, row, now, refusals)
            if claimed is None:
                return
            row = claimed
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

    def _claimed_row(self, key: Key, item: Item, row: Row, now: float, refusals: int) -> Row | None:
        """The object's row under its claim (read afresh on a shared backend); None if refused or synced.

        A refused object is looked at again soon (:meth:`_refused`).
        """
        held = self._claim(key, item.model)
        if not held:
            self._refused(key, item, now, refusals)
            return None
        if held is not SHARED:
            return row
        # Another replica may have synced it between our read and our claim.
        backend = self.ctx.accessor.backend
        fresh = self.fresh.pop(key) if key in self.fresh else backend.get(item.model, key[1])
        if fresh is None or not still_pending(fresh, self.custom_fetch):
            return None
        return fresh

    def _backoff_until(self, row: Row, now: float) -> float | None:
        """When the object's backoff ends, if it is in backoff at ``now`` (``None``: it is not)."""
        next_run = register_of(row).get("next_run") or 0
        if not self.ctx.settings.backoff_disabled and isinstance(next_run, int | float) and next_run > now:
            return float(next_run)
        return None

    def _refused(self, key: Key, item: Item, now: float, refusals: int) -> None:
        """Someone else holds the object: look again soon, at the front of the queue."""
        self.refused[key] = refusals + 1
        self.defer(key, item, now + _LOCK_BACKOFF.delay(refusals + 1))

    def _token(self, key: Key, item: Item, refusals: int) -> bool:
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
        self.ensure_drain()

    def _object(self, item: Item, row: Row) -> ORMWrapper:
        return self.ctx.accessor.from_row(item.model, row)

    def _blocked(self, key: Key, item: Item, obj: ORMWrapper) -> bool:
        """True (the object set waiting) when what it depends on, or its dependents' deletes, are owed."""
        row = row_of(obj)
        if row.get("deleted"):
            blockers = self.deps.undeleted_dependents(obj)
            if blockers:
                self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in blockers])
            return bool(blockers)
        unsynced = self.deps.unsynced_dependencies(obj)
        if not unsynced:
            return False
        failed = next(
            (
                (m, r)
                for m, r in unsynced
                if r.get("backend_code") == BackendCode.ERROR and register_of(r).get("failures")
            ),
            None,
        )
        if failed is not None:
            fields = blocked_fields(failed[0], failed[1]["id"], str(failed[1].get("backend_status") or ""))
            if row.get("backend_status") != fields["backend_status"]:
                self.write_status(item.model, row["id"], fields)
        self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in unsynced])
        return True

    def _ended(self, key: Key, item: Item, outcome: str, retry_at: float | None) -> None:
        """The handler ended (its status written): count it, wake its waiters, schedule a retry."""
        if outcome == "done":
            self.ctx.state.done += 1
        else:
            self.ctx.state.failed += 1
            if retry_at is not None:
                self.defer(key, item, retry_at)
        if self.batch is None:
            self._wake_waiters(key)
        else:
            self.ended.append(key)  # woken once its status is committed

    def on_work_done(self, message: WorkDone) -> None:
        """A worker ended an object: apply the outcome (once its status is committed), give it more."""
        self._free_slot(message.slot)
        if message.outcome == "withdrawn" or message.key not in self.in_flight:
            self.ensure_drain()
            return
        if not message.writes:
            self._finish(message)
            self._release_unless_draining()
            return
        self.done.append(message)
        if message.outcome in ("exit", "error"):
            with self.batched():  # its failure status is stored before the step is replaced
                self._take_done()
            return
        if not self.drain_scheduled:  # the next drain commits it (with what ends meanwhile)
            self.drain_scheduled = True
            self.actor_ref.tell(Drain())

    def _finish(self, message: WorkDone) -> None:
        """Apply a worker's outcome: count it, retry or wake its waiters; a change meanwhile looks again.

        Its status is stored (or it had none): its claim goes at the drain's end.
        """
        item, refusals = self.in_flight.pop(message.key)
        key = message.key
        self._claim_back(key)
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
            self.enqueue(key, Item(again.model))  # its row read afresh: one read meanwhile predates ours
        self.update_depth()
        self.ensure_drain()
