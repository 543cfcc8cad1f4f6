"""The sync-step actor: one per ``SyncStep``, runs ``sync_record`` / ``delete_record``.

It keeps a queue of objects to look at, keyed by ``(root model, id)``, fed by the
dirty-set queries (on start, after a restart, periodically) and by change notices.
Objects are processed one at a time, each through one :class:`Drain` message, so
the actor stays responsive between objects. An object in backoff waits on a
timer; an object whose dependencies are not enacted waits for a notice about them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from actors.logs import traceback_if_debug
from actors.orm import ModelAccessor, ORMWrapper
from actors.steps import DeferredException, StepFactory, SyncStep
from actors.store import Caller, NotFound, Pending, Row, row_is_pending

from ._child import ChildActor, ChildContext, StepExit
from ._deps import Dependencies, Key
from ._status import blocked_fields, error_text, failure_fields, register_of, success_fields
from .messages import Changed, Drain, Resync, Wake
from .settings import RuntimeSettings

__all__ = ["SyncStepActor"]

#: How long an object waits when another actor or replica holds it: the first retry,
#: doubling at each refusal up to LOCK_RETRY_MAX. A retry goes to the front of the queue.
LOCK_RETRY = 0.05
LOCK_RETRY_MAX = 1.0
#: What ``_claim`` yields when it holds a cross-process claim.
SHARED = object()
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


class SyncStepActor(ChildActor):
    kind = "sync"

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
        self.resync_scheduled = False
        self.timer_due: float | None = None
        self.handlers.update(
            {Changed: self.on_changed, Resync: self.on_resync, Drain: self.on_drain, Wake: self.on_wake}
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
        self._replica(True)
        self.actor_ref.tell(Resync("start"))

    def on_stop(self) -> None:
        self._replica(False)
        super().on_stop()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._replica(False)
        super().on_failure(exc_type, exc_value, traceback)

    def _replica(self, join: bool) -> None:
        """Join (or leave) the replicas sharing this step's work, on a shared backend."""
        backend = self.ctx.accessor.backend
        method = getattr(backend, "join" if join else "leave", None)
        if getattr(backend, "shared", False) and method is not None:
            method(self.ctx.name)

    def is_idle(self) -> bool:
        if self.queue or self.drain_scheduled or self.resync_scheduled:
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
            if not self.queue or self.ctx.state.state == "stopping":
                break
            key, item = self.queue.popitem(last=False)
            if self._reread_theirs(key, item):
                return
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
        self.queue[key] = item
        self._update_depth()

    def _ensure_drain(self) -> None:
        if self.queue and not self.drain_scheduled:
            self.drain_scheduled = True
            self.actor_ref.tell(Drain())

    def _update_depth(self) -> None:
        self.ctx.state.queue_depth = len(self.queue) + len(self.deferred) + len(self.waiting_items)

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
        if not self._still_pending(row):
            return
        now = self.ctx.clock.now()
        next_run = register_of(row).get("next_run") or 0
        if not self.ctx.settings.backoff_disabled and isinstance(next_run, int | float) and next_run > now:
            self._defer(key, item, float(next_run))
            return
        if not self.ctx.locks.try_acquire(key):
            self._refused(key, item, now, refusals)
            return
        try:
            with self._claim(item.model, key[1]) as held:
                if not held:
                    self._refused(key, item, now, refusals)
                    return
                if held is SHARED:
                    # Another replica may have synced it between our read and our claim.
                    row = accessor.backend.get(item.model, key[1])
                    if row is None or not self._still_pending(row):
                        return
                self._run(key, item, row)
        except NotFound:
            pass  # purged while we worked on it
        finally:
            self.ctx.locks.release(key)

    def _refused(self, key: Key, item: _Item, now: float, refusals: int) -> None:
        """Someone else holds the object: look again soon, at the front of the queue."""
        self.refused[key] = refusals + 1
        self._defer(key, item, now + min(LOCK_RETRY * 2**refusals, LOCK_RETRY_MAX))

    def _still_pending(self, row: Row) -> bool:
        return self.custom_fetch or row_is_pending(row, "sync_deleted" if row.get("deleted") else "sync")

    @contextmanager
    def _claim(self, model: str, id: int) -> Iterator[object]:
        """The backend's cross-process claim on the object, when it has one (PostgreSQL)."""
        backend = self.ctx.accessor.backend
        if not getattr(backend, "shared", False):
            yield True
            return
        with backend.claim(model, id) as held:  # type: ignore[attr-defined]
            yield SHARED if held else False

    def _run(self, key: Key, item: _Item, row: Row) -> None:
        step = self._ensure_step()
        accessor = self.ctx.accessor
        obj: ORMWrapper = accessor.get_model_class(item.model)._from_row(row)
        id = row["id"]
        if row.get("deleted"):
            blockers = self.deps.undeleted_dependents(obj)
            if blockers:
                self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in blockers])
                return
            if self._call(step.delete_record, obj, row, item, key):
                self.write_status(item.model, id, {"backend_need_reap": True})
                self.log.info("synced", model=item.model, id=id, deleted=True)
                self._done(key)
            return
        unsynced = self.deps.unsynced_dependencies(obj)
        if unsynced:
            failed = next(
                (
                    (m, r)
                    for m, r in unsynced
                    if r.get("backend_code") == 2 and register_of(r).get("failures")
                ),
                None,
            )
            if failed is not None:
                fields = blocked_fields(
                    failed[0], failed[1]["id"], str(failed[1].get("backend_status") or "")
                )
                if row.get("backend_status") != fields["backend_status"]:
                    self.write_status(item.model, id, fields)
            self._wait(key, item, [self.deps.key(m, r["id"]) for m, r in unsynced])
            return
        if not row.get("backend_need_delete"):
            self.write_status(item.model, id, {"backend_need_delete": True})
        if self._call(step.sync_record, obj, row, item, key):
            self.write_status(item.model, id, success_fields(row, self.ctx.clock.now()))
            after = getattr(step, "after_sync_save", None)
            if callable(after):
                self.call_user(after, obj, caller=Caller.SYNCHRONIZER)
            self.log.info("synced", model=item.model, id=id, deleted=False)
            self._done(key)

    def _call(self, fn: Any, obj: ORMWrapper, row: Row, item: _Item, key: Key) -> bool:
        """Run a handler; on failure write the status, schedule the retry and return False."""
        try:
            self.call_user(fn, obj, caller=Caller.STEP, deadline=getattr(self.step, "deadline", None))
            return True
        except StepExit as exc:
            self._failed(key, item, row, exc)
            raise
        except Exception as exc:
            self._failed(key, item, row, exc)
            return False

    def _failed(self, key: Key, item: _Item, row: Row, exc: BaseException) -> None:
        now = self.ctx.clock.now()
        fields, next_run = failure_fields(row, exc, now, self.ctx.settings.backoff_disabled)
        deferred = isinstance(exc, DeferredException)
        report = self.log.info if deferred else self.log.warning
        report(
            "sync deferred" if deferred else "sync failed",
            model=item.model,
            id=row["id"],
            error=error_text(exc),
            exc_info=traceback_if_debug(self.log, exc),
        )
        self.ctx.state.failed += 1
        self.write_status(item.model, row["id"], fields)
        self._wake_waiters(key)
        if deferred or not self.ctx.settings.backoff_disabled:
            self._defer(key, item, next_run)

    def _done(self, key: Key) -> None:
        self.ctx.state.done += 1
        self._wake_waiters(key)
