"""The base of the sync-step and policy actors: a queue of objects, drained a batch per message.

Objects are keyed by ``(root model, id)``. The queue is fed by the actor's dirty-set
read (:meth:`QueueActor.pending`, on start, after a restart, every
``resync_period`` seconds) and by change notices; a :class:`Drain` message takes
up to ``drain_batch`` objects off it (at most ``DRAIN_SECONDS``), each handled by
:meth:`QueueActor.process`, so the actor stays responsive between objects. An
object due again later waits in ``deferred`` on one timer (:class:`Wake`). A
purge notice drops the object everywhere. The change feed never sends an actor
the notices of its own status writes.

Group commit: the status writes of one Drain message are collected and written by
one ``write_batch`` of the backend, committed once when the batch ends (a write
that must be stored before what follows, ``durable``, commits the batch so far).
A crash before that commit loses them, and the objects are synced again: the
at-least-once rule allows it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from actors.store import Caller, NotFound, Row, WriteContext

from ._child import ChildActor, ChildContext
from ._deps import Key, Keys
from .messages import Changed, Drain, Resync, Wake

__all__ = ["DRAIN_SECONDS", "LONG_QUEUE", "Item", "QueueActor"]

#: At most this many seconds of work per Drain message (then the mailbox is read again).
DRAIN_SECONDS = 0.05
#: While more than this many objects are queued, a Drain message takes up to this many
#: (still at most DRAIN_SECONDS of work): the commit and the statements of a batch are
#: shared by more objects when there is a backlog.
LONG_QUEUE = 256


@dataclass
class Item:
    """A queued object: the model whose step or policies apply, and its row if a query read it."""

    model: str
    row: Row | None = None
    #: When it entered the queue (``time.monotonic``), for the queue-duration metric.
    since: float = 0.0


class QueueActor(ChildActor):
    """A child actor working through a queue of objects; subclasses say what is pending and what to do.

    Hooks: :meth:`pending` (the dirty set, on each :class:`Resync`), :meth:`process`
    (one object), and optionally :meth:`changed` (a notice about an object of one
    of ``models``), :meth:`forget` (a purge), :meth:`may_drain`, :meth:`depth`.
    """

    #: At most this many objects per Drain message (:data:`LONG_QUEUE` while the queue is longer).
    drain_batch = 32

    def __init__(self, ctx: ChildContext, models: list[str]) -> None:
        super().__init__(ctx)
        #: The models whose objects this actor handles (by name or by base).
        self.models = models
        self._keys = Keys(ctx.accessor)
        self.queue: OrderedDict[Key, Item] = OrderedDict()
        #: Objects due again later: when, and the item (its row read again then).
        self.deferred: dict[Key, tuple[float, Item]] = {}
        self.timer_due: float | None = None
        self.drain_scheduled = False
        #: True from the start: the start's Resync is owed (an IsIdle may come before it is sent).
        self.resync_owed = True
        #: The status writes of the drain under way, not committed yet (``None``: none under way).
        self.batch: list[tuple[str, int, dict[str, Any], WriteContext]] | None = None
        self.handlers.update(
            {Changed: self.on_changed, Resync: self.on_resync, Drain: self.on_drain, Wake: self.on_wake}
        )

    # -- hooks ----------------------------------------------------------------
    def pending(self, reason: str) -> Iterable[tuple[Key, Item]]:
        """The objects to look at after a :class:`Resync` for ``reason`` (the dirty set)."""
        raise NotImplementedError

    def process(self, key: Key, item: Item) -> bool:
        """Handle one object taken off the queue; ``False`` ends the drain (a Resync comes first)."""
        raise NotImplementedError

    def changed(self, key: Key, model: str, kind: str) -> None:
        """A notice (``kind`` ``"create"``, ``"update"`` or ``"delete"``) about an object of ``model``."""
        self.deferred.pop(key, None)
        self.enqueue(key, Item(model))
        self.update_depth()
        self.ensure_drain()

    def forget(self, key: Key) -> None:
        """The object was purged: drop it everywhere."""
        self.queue.pop(key, None)
        self.deferred.pop(key, None)

    def may_drain(self) -> bool:
        """Whether an object may be taken off the queue now."""
        return True

    def depth(self) -> int:
        """How many objects this actor holds (queued, waiting or running): its status ``queue_depth``."""
        return len(self.queue) + len(self.deferred)

    # -- life -----------------------------------------------------------------
    def on_start(self) -> None:
        super().on_start()
        self.actor_ref.tell(Resync("start"))

    def is_idle(self) -> bool:
        if self.queue or self.drain_scheduled or self.resync_owed:
            return False
        now = self.ctx.clock.now()
        return all(due > now for due, _ in self.deferred.values())

    def key(self, model: str, id: int) -> Key:
        """The queue key of object ``model`` ``id``: ``(root model, id)``."""
        return self._keys.key(model, id)

    def request_resync(self, reason: str) -> None:
        """Ask for a :class:`Resync` now, unless one is owed already."""
        if not self.resync_owed:
            self.resync_owed = True
            self.actor_ref.tell(Resync(reason))

    # -- messages -------------------------------------------------------------
    def on_resync(self, message: Resync) -> None:
        self.resync_owed = False
        for key, item in self.pending(message.reason):
            self.enqueue(key, item)
        if message.reason != "change":
            self.schedule("resync", self.ctx.settings.resync_period, Resync("period"))
        self.update_depth()
        self.ensure_drain()

    def on_changed(self, message: Changed) -> None:
        notice = message.notice
        schema = self.ctx.accessor.schema
        if notice.model not in schema:
            return
        key = self.key(notice.model, notice.id)
        self.noticed(key)
        if notice.kind == "purge":
            self.forget(key)
            self.update_depth()
            return
        model = schema.base_among(notice.model, self.models)
        if model is not None:
            self.changed(key, model, notice.kind)

    def noticed(self, key: Key) -> None:
        """Any notice about ``key`` (of a handled model or not), before anything else is done with it."""

    def on_wake(self, _message: Wake) -> None:
        """The timer fired: deferred objects that are due go back to the queue (their rows re-read)."""
        self.timer_due = None
        now = self.ctx.clock.now()
        for key, (due, item) in list(self.deferred.items()):
            if due <= now:
                del self.deferred[key]
                self.requeue(key, item)
        self.arm_timer()
        self.update_depth()
        self.ensure_drain()

    def on_drain(self, _message: Drain) -> None:
        """Process a few queued objects (a small batch keeps the mailbox responsive); commit once."""
        self.drain_scheduled = False
        started = time.monotonic()
        with self.batched():
            self.before_drain()
            for _ in range(self.batch_size()):
                if not self.queue or self.stopping or not self.may_drain():
                    break
                key, item = self.queue.popitem(last=False)
                self.ctx.metrics.queued(self.ctx.name, item.since)
                with suppress(NotFound):  # purged while we worked on it
                    if self.process(key, item) is False:
                        self.update_depth()
                        return
                if time.monotonic() - started > DRAIN_SECONDS:
                    break
            if not self.stopping:
                self.after_drain()
        self.update_depth()
        self.ensure_drain()

    # -- group commit ---------------------------------------------------------
    @contextmanager
    def batched(self) -> Iterator[None]:
        """Collect the status writes made inside; commit them once at the end (an exception too)."""
        self.batch = []
        try:
            yield
        finally:
            self.commit_batch()
            self.batch = None

    def write_status(self, model: str, id: int, fields: dict[str, Any], *, durable: bool = False) -> None:
        """Write bookkeeping ``fields`` into the drain's batch, committed with it (at once if ``durable``)."""
        if self.batch is None:
            super().write_status(model, id, fields)
            return
        ctx = WriteContext(Caller.SYNCHRONIZER, update_fields=tuple(fields), origin=self.ctx.name)
        self.batch.append((model, id, fields, ctx))
        if durable:
            self.commit_batch()

    def batch_size(self) -> int:
        """How many objects the next Drain message takes at most: more while the queue is long."""
        return LONG_QUEUE if len(self.queue) > LONG_QUEUE else self.drain_batch

    def before_drain(self) -> None:
        """Called at the start of each drain, inside its batch."""

    def after_drain(self) -> None:
        """Called at the end of each drain that was not cut short, inside its batch (before its commit)."""

    def commit_batch(self) -> set[tuple[str, int]]:
        """Commit the status writes collected so far, in one transaction; then :meth:`committed`.

        Returns the ``(model, id)`` of the writes that failed (each undone alone), which
        :meth:`committed` is given too.
        """
        writes, self.batch = self.batch or [], [] if self.batch is not None else None
        failed: set[tuple[str, int]] = set()
        if writes:
            backend = self.ctx.accessor.backend
            write_batch = getattr(backend, "write_batch", None)
            if write_batch is None:  # a backend without group commit: one write each
                results: list[Exception | None] = []
                for model, id, fields, ctx in writes:
                    try:
                        backend.update(model, id, fields, ctx)
                        results.append(None)
                    except Exception as exc:
                        results.append(exc)
            else:
                results = write_batch(writes)
            for (model, id, _fields, _ctx), error in zip(writes, results, strict=True):
                if error is None:
                    continue
                failed.add((model, id))
                if not isinstance(error, NotFound):
                    # Its object stays dirty: the next resync looks at it again.
                    self.log.error("status write failed", model=model, id=id, error=repr(error))
        self.committed(failed)
        return failed

    def committed(self, failed: set[tuple[str, int]]) -> None:
        """The batch's status writes are stored but ``failed`` (or there were none): what waited may go on."""

    # -- queue ----------------------------------------------------------------
    def enqueue(self, key: Key, item: Item) -> None:
        """Queue the object (at its place if queued already); a queued re-read beats a query's row."""
        if item.row is not None and key in self.queue and self.queue[key].row is None:
            return
        item.since = self.queue[key].since if key in self.queue else time.monotonic()
        self.queue[key] = item

    def requeue(self, key: Key, item: Item) -> None:
        """A deferred object is due: back to the queue."""
        self.enqueue(key, item)

    def ensure_drain(self) -> None:
        if self.queue and not self.drain_scheduled and self.may_drain():
            self.drain_scheduled = True
            self.actor_ref.tell(Drain())

    def update_depth(self) -> None:
        self.ctx.state.queue_depth = self.depth()
        self.ctx.state.queued = len(self.queue)

    def defer(self, key: Key, item: Item, due: float) -> None:
        """Look at the object again at ``due`` (its row read afresh then)."""
        self.deferred[key] = (due, Item(item.model))
        self.update_depth()
        self.arm_timer()

    def arm_timer(self) -> None:
        """One timer, for the earliest deferred object (never later than one already armed)."""
        if not self.deferred:
            return
        due = min(d for d, _ in self.deferred.values())
        if self.timer_due is not None and self.timer_due <= due:
            return
        self.timer_due = due
        self.schedule("wake", due - self.ctx.clock.now(), Wake())
