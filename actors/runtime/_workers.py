"""What runs one object through a sync step, and the worker actors that do it K at a time.

A sync-step actor with ``concurrency`` K > 1 owns K :class:`SyncWorker` actors. It
keeps the queue, the dependency waits, the backoff timers and the rate limit; it
sends an idle worker a :class:`~actors.runtime.messages.Work` for an object that is
ready, and hears back a :class:`~actors.runtime.messages.WorkDone`. The worker takes
the object's lock in this process (:class:`~actors.runtime._child.ObjectLocks`), runs
the handler through :func:`execute` and lets the lock go, all in its own thread: a
worker abandoned on a hung handler keeps the object locked until its call returns.
With K = 1 the sync-step actor calls :func:`execute` itself, as before.

On a shared backend (PostgreSQL, several replicas) the sync-step actor claims the
object against the other processes before it sends the Work (a drain's claims are
taken ahead together, see ``_sync_claims``) and reads its row afresh under the claim:
the Work carries the row and the claim (a :class:`HeldClaim`), and the worker neither
claims nor reads again. The claim is let go once the object's status is stored.

The object's status writes go back in the ``WorkDone``: the sync-step actor commits
them with its next drain's other writes, the status writes of every object that ended
meanwhile and the ``backend_need_delete`` marks of the objects it hands out next, in
one transaction, and then lets go the claims of those objects (one statement). A
write that must be stored before the code after it runs (``durable``: the mark before
the handler when the drain could not store it, the status before ``after_sync_save``)
is written by the worker at once. A worker of a step that is stopping, replaced or
gone writes them all itself (its actor commits nothing more), and then lets the
object's claim go itself, unless it had handed the object back before.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from actors.orm import ORMWrapper
from actors.steps import DeferredException, StepFactory
from actors.store import Caller, NotFound, Row, row_is_pending

from ._child import ChildActor, ChildContext, StepExit, tell_quietly
from ._status import failure_fields, success_fields
from .messages import Work, WorkDone

__all__ = ["ACTOR", "SHARED", "WORKER", "HeldClaim", "SyncWorker", "execute", "still_pending"]

#: What ``ClaimsAhead._claim`` returns when it holds a cross-process claim.
SHARED = object()
#: Who lets a :class:`HeldClaim` go: the sync-step actor or the worker.
ACTOR = "actor"
WORKER = "worker"


class HeldClaim:
    """The cross-process claim on an object a sync-step actor hands to a worker; let go exactly once.

    Claims are counted within a store (see ``Store.claim_many``): letting one go twice
    would let go another holder's. So who lets it go is settled once (:meth:`settle`),
    by whichever of the two comes first: the worker, when its call has returned, hands
    the object back to the actor (:data:`ACTOR`: the actor lets the claim go once the
    object's status is committed) or keeps it (:data:`WORKER`: it writes the status
    itself and lets the claim go, its actor being gone); the actor, when it stops,
    gives up the claims of the objects still in its workers' hands (:data:`WORKER`):
    each goes when its handler returns, never before.
    """

    __slots__ = ("_lock", "_owner", "id", "model")

    def __init__(self, model: str, id: int) -> None:
        self.model = model
        self.id = id
        self._lock = threading.Lock()
        self._owner: str | None = None

    @property
    def owner(self) -> str | None:
        """Who lets the claim go (``None``: not settled yet, the handler runs)."""
        return self._owner

    def settle(self, owner: str) -> bool:
        """Settle who lets the claim go, unless it is settled already; True if ``owner`` does."""
        with self._lock:
            if self._owner is None:
                self._owner = owner
            return self._owner == owner

    def let_go(self, backend: Any) -> None:
        """Give the claim back to the store (its owner does, once)."""
        backend.release_many(self.model, [self.id])


def still_pending(row: Row, custom_fetch: bool) -> bool:
    """Whether ``row`` still needs its sync (or delete); a step with its own ``fetch_pending`` decides."""
    return custom_fetch or row_is_pending(row, "sync_deleted" if row.get("deleted") else "sync")


def execute(
    actor: ChildActor, step: Any, model: str, row: Row, obj: ORMWrapper | None = None
) -> tuple[str, float | None]:
    """Run ``sync_record`` (or ``delete_record``) on the object of ``row`` and write its status.

    The caller holds the object's locks and has checked its dependencies. Returns
    ``("done", None)`` when the handler returned; after a failure (its status
    written) ``("failed", retry_at)``: when the object is due again, or ``None`` when
    it waits for a change. Step code that exits raises :class:`StepExit` after the
    failure status is written. ``obj`` is the object of ``row``, when the caller has it.
    """
    if obj is None:
        obj = actor.ctx.accessor.from_row(model, row)
    id = row["id"]
    deleted = bool(row.get("deleted"))
    if not deleted and not row.get("backend_need_delete"):
        # Stored before the handler runs: an object that may exist in the backend is deleted there.
        actor.write_status(model, id, {"backend_need_delete": True}, durable=True)
    handler = step.delete_record if deleted else step.sync_record
    started, metrics = time.monotonic(), actor.ctx.metrics
    try:
        actor.call_user(handler, obj, caller=Caller.STEP, deadline=getattr(step, "deadline", None))
    except StepExit as exc:
        metrics.reconciled(actor.ctx.name, "error", started)
        _failed(actor, model, row, exc)
        raise
    except Exception as exc:
        result = "deferred" if isinstance(exc, DeferredException) else "error"
        metrics.reconciled(actor.ctx.name, result, started)
        return "failed", _failed(actor, model, row, exc)
    if deleted:
        metrics.reconciled(actor.ctx.name, "success", started)
        actor.write_status(model, id, {"backend_need_reap": True})
        actor.log.info("synced", model=model, id=id, deleted=True)
        return "done", None
    fields = success_fields(row, actor.ctx.clock.now())
    after = getattr(step, "after_sync_save", None)
    actor.write_status(model, id, fields, durable=callable(after))  # the hook sees the status stored
    metrics.reconciled(actor.ctx.name, "success", started, time.time() - fields["enacted"])
    if callable(after):
        actor.call_user(after, obj, caller=Caller.SYNCHRONIZER)
    actor.log.info("synced", model=model, id=id, deleted=False)
    return "done", None


def _failed(actor: ChildActor, model: str, row: Row, exc: BaseException) -> float | None:
    settings = actor.ctx.settings
    fields, next_run = failure_fields(row, exc, actor.ctx.clock.now(), settings.backoff_disabled)
    deferred = actor.report_failure("sync", model, row["id"], exc)
    actor.write_status(model, row["id"], fields)
    return next_run if deferred or not settings.backoff_disabled else None


class SyncWorker(ChildActor):
    """One of a sync step's K slots: runs one object at a time, with its own step instance.

    Its own instance, as the original built one step instance per object it synced:
    step code keeping state on ``self`` is never called from two threads at once.
    It shares the step actor's context (state, generation, locks), so the deadline
    watchdog sees its calls and a replaced step's workers stop with it.
    """

    kind = "sync-worker"

    def __init__(self, ctx: ChildContext, factory: StepFactory, slot: int) -> None:
        super().__init__(ctx)
        self.factory = factory
        self.slot = slot
        self.step: Any = None
        self.log = self.log.bind(worker=slot)
        self.handlers[Work] = self.on_work
        #: The status writes of the object under way left to the step actor (None: written at once).
        self.writes: list[tuple[str, int, dict[str, Any]]] | None = None

    def on_start(self) -> None:
        pass  # the step actor's state is not ours to set

    def on_receive(self, message: Any) -> Any:
        if type(message) is Work and (self.stale or self.stopping):
            self._abandon(message)  # a replaced or stopping step starts no new work
        return super().on_receive(message)

    def on_stop(self) -> None:
        """Works still in the mailbox are never run: let their claims go."""
        left = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()  # only this thread reads it: never blocks
            if type(envelope.message) is Work:
                self._abandon(envelope.message)
            else:
                left.append(envelope)  # answered by pykka as the actor stops
        for envelope in left:
            self.actor_inbox.put(envelope)
        super().on_stop()

    def _abandon(self, work: Work) -> None:
        """A Work this worker will not run: its claim goes (unless the step actor withdrew it: its own)."""
        if work.ticket is not None and not work.ticket.acquire(blocking=False):
            return
        claim: HeldClaim | None = work.claim
        if claim is not None and claim.settle(WORKER):
            self._let_go(work.key, claim)

    def _let_go(self, key: tuple[str, int], claim: HeldClaim) -> None:
        try:
            claim.let_go(self.ctx.accessor.backend)
        except Exception as exc:  # a lost claim connection took the claim with it
            self.log.error("claim release failed", key=key, error=repr(exc))

    def on_work(self, work: Work) -> None:
        """Handle the object; tell the step actor how it ended (a failure of ours ends the step)."""
        if work.ticket is not None and not work.ticket.acquire(blocking=False):
            tell_quietly(work.reply_to, WorkDone(work.key, self.slot, "withdrawn"))
            return  # the step actor took it back (it waited too long behind our last one)
        self.writes = []
        try:
            outcome, retry_at = self._work(work)
            done = WorkDone(work.key, self.slot, outcome, retry_at)
        except StepExit as exc:
            done = WorkDone(work.key, self.slot, "exit", error=str(exc))
        except Exception as exc:
            done = WorkDone(work.key, self.slot, "error", error=f"{type(exc).__name__}: {exc}")
        # The step actor commits nothing more once it stops, is replaced or is gone: then this
        # worker writes the status, and lets the object's claim go, itself.
        gone = self.stopping or self.stale or not work.reply_to.is_alive()
        claim: HeldClaim | None = work.claim
        # Keeps the claim (lets it go below) when gone, or when the actor gave it up (stopped).
        keeps = claim is not None and (claim.settle(WORKER) if gone else not claim.settle(ACTOR))
        if self.writes and (gone or keeps):
            try:
                self._write_now()
            except Exception as exc:  # the object stays dirty: synced again after the restart
                self.log.error("status write failed", key=work.key, error=repr(exc))
        if keeps and claim is not None:
            self._let_go(work.key, claim)
        writes, self.writes = tuple(self.writes or ()), None
        if writes:
            done = replace(done, writes=writes)
        tell_quietly(work.reply_to, done)

    def write_status(self, model: str, id: int, fields: dict[str, Any], *, durable: bool = False) -> None:
        """Leave the write to the step actor's next commit; a ``durable`` one (and those before it) now."""
        if self.writes is None:
            super().write_status(model, id, fields)
            return
        self.writes.append((model, id, fields))
        if durable:
            self._write_now()

    def _write_now(self) -> None:
        writes, self.writes = self.writes or [], []
        for model, id, fields in writes:
            super().write_status(model, id, dict(fields))

    def _work(self, work: Work) -> tuple[str, float | None]:
        """Run the object under this process's lock on it (its claim, on a shared backend, is the actor's)."""
        locks = self.ctx.locks
        if not locks.try_acquire(work.key):
            return "refused", None
        try:
            if self.step is None:
                self.step = self.make_step(self.factory)
            return execute(self, self.step, work.model, dict(work.row))
        except NotFound:
            return "skipped", None  # purged while we worked on it
        finally:
            locks.release(work.key)
