"""The policy actor: runs every model policy's ``handle_create/update/delete``.

Work is queued per object, keyed by ``(root model, id)``, from the two policy
queries (on start, after a restart, periodically) and from change notices; each
object is handled by every policy whose model it is (by name or by base), then
its policy status is written once.

An object whose policy raised (``DeferredException`` included: a policy waiting
for something else) is tried again ``POLICY_RETRY`` seconds after the attempt,
with no backoff, as the original's policy loop did (a pass over every object
still to police at most every 5 s). Until then a change of the object waits for
that retry (so a policy that saves its object and then fails does not spin); a
delete brings it back at once, for ``handle_delete``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

from actors.logs import traceback_if_debug
from actors.steps import DeferredException, Policy, StepFactory
from actors.store import Caller, NotFound, Pending, Row, row_is_pending

from ._child import ChildActor, ChildContext, StepExit
from ._deps import Key
from ._status import error_text, policy_failure_fields, policy_success_fields
from .messages import Changed, Drain, Resync, Wake

__all__ = ["POLICY_RETRY", "PolicyActor"]

#: A failed or deferred policy runs again this many seconds after the attempt (the original's pass period).
POLICY_RETRY = 5.0


class PolicyActor(ChildActor):
    kind = "policy"

    def __init__(self, ctx: ChildContext, factories: list[StepFactory]) -> None:
        super().__init__(ctx)
        self.factories = factories
        self.policies: list[Policy] | None = None
        self.models: list[str] = list(dict.fromkeys(_model_name(f) for f in factories))
        #: Objects to look at: the model whose policies apply, and the row if a query read it.
        self.queue: OrderedDict[Key, tuple[str, Row | None]] = OrderedDict()
        #: Objects whose policy failed: when each is due again, and its model.
        self.retry: dict[Key, tuple[float, str]] = {}
        self.retry_due: float | None = None
        self.drain_scheduled = False
        #: The start's Resync is still to come (an IsIdle asked before it must not say idle).
        self.resync_pending = True
        self.handlers.update(
            {Changed: self.on_changed, Resync: self.on_resync, Drain: self.on_drain, Wake: self.on_wake}
        )

    @classmethod
    def interests(cls, factories: list[StepFactory]) -> frozenset[str]:
        return frozenset(_model_name(f) for f in factories)

    def on_start(self) -> None:
        super().on_start()
        self.actor_ref.tell(Resync("start"))

    def is_idle(self) -> bool:
        if self.queue or self.drain_scheduled or self.resync_pending:
            return False
        now = self.ctx.clock.now()
        return all(due > now for due, _ in self.retry.values())

    def _ensure_policies(self) -> list[Policy]:
        if self.policies is None:
            self.policies = [self.make_step(f) for f in self.factories]
        return self.policies

    # -- messages -------------------------------------------------------------
    def on_resync(self, message: Resync) -> None:
        self.resync_pending = False
        self._ensure_policies()
        backend = self.ctx.accessor.backend
        for model in self.models:
            if not self.ctx.accessor.has_model_class(model):
                continue
            for which in (Pending.POLICY, Pending.POLICY_DELETED):
                for row in backend.pending(model, which):
                    key = self._key(model, row["id"])
                    if key not in self.queue and key not in self.retry:
                        self.queue[key] = (model, row)
        self._update_depth()
        self.schedule("resync", self.ctx.settings.resync_period, Resync("period"))
        self._ensure_drain()

    def on_changed(self, message: Changed) -> None:
        notice = message.notice
        schema = self.ctx.accessor.schema
        if notice.origin == self.ctx.name or notice.model not in schema:
            return
        key = self._key(notice.model, notice.id)
        if notice.kind == "purge":
            self.queue.pop(key, None)
            self.retry.pop(key, None)
        else:
            model = next((m for m in self.models if m in schema and schema.is_a(notice.model, m)), None)
            if model is None:
                return
            if key in self.retry and notice.kind != "delete":
                return  # its retry comes soon: at most one attempt per POLICY_RETRY (never spins)
            self.retry.pop(key, None)
            self.queue[key] = (model, None)
        self._update_depth()
        self._ensure_drain()

    def on_wake(self, _message: Wake) -> None:
        """The retry timer fired: failed objects that are due go back to the queue (re-read)."""
        self.retry_due = None
        now = self.ctx.clock.now()
        for key, (due, model) in list(self.retry.items()):
            if due <= now:
                del self.retry[key]
                self.queue.setdefault(key, (model, None))
        self._arm_retry()
        self._update_depth()
        self._ensure_drain()

    def on_drain(self, _message: Drain) -> None:
        self.drain_scheduled = False
        if self.queue:
            key, (model, row) = self.queue.popitem(last=False)
            self._update_depth()
            with contextlib.suppress(NotFound):
                self._process(key, model, row)
        self._ensure_drain()

    def _key(self, model: str, id: int) -> Key:
        return (self.ctx.accessor.schema.root(model), id)

    def _ensure_drain(self) -> None:
        if self.queue and not self.drain_scheduled:
            self.drain_scheduled = True
            self.actor_ref.tell(Drain())

    def _update_depth(self) -> None:
        self.ctx.state.queue_depth = len(self.queue) + len(self.retry)

    def _arm_retry(self) -> None:
        """One timer, for the earliest retry due (never earlier than one already armed)."""
        if not self.retry:
            return
        due = min(d for d, _ in self.retry.values())
        if self.retry_due is not None and self.retry_due <= due:
            return
        self.retry_due = due
        self.schedule("retry", due - self.ctx.clock.now(), Wake())

    # -- one object -----------------------------------------------------------
    def _process(self, key: Key, model: str, row: Row | None) -> None:
        accessor = self.ctx.accessor
        schema = accessor.schema
        row = row if row is not None else accessor.backend.get(model, key[1])
        if row is None:
            return
        deleted = bool(row.get("deleted"))
        if not row_is_pending(row, "policy_deleted" if deleted else "policy"):
            return
        leaf = row.get("leaf_model_name") or model
        lineage = {leaf, *schema.ancestors(leaf)} if leaf in schema else {model}
        method = (
            "handle_delete" if deleted else "handle_create" if row.get("policed") is None else "handle_update"
        )
        applicable = [p for p in self._ensure_policies() if p.model_name in lineage]
        objects = []
        try:
            for policy in applicable:
                handler = getattr(policy, method, None)
                if handler is None:
                    continue
                pmodel = str(policy.model_name)
                prow = row if pmodel == model else accessor.backend.get(pmodel, row["id"])
                if prow is None:
                    continue
                obj = accessor.get_model_class(pmodel)._from_row(prow)
                objects.append((policy, obj))
                self.call_user(handler, obj, caller=Caller.POLICY, deadline=getattr(policy, "deadline", None))
        except StepExit as exc:
            self._failed(key, model, row, exc)
            raise
        except Exception as exc:
            self._failed(key, model, row, exc)
            return
        needs_delete_policy = any(hasattr(p, "handle_delete") for p in applicable)
        self.write_status(model, row["id"], policy_success_fields(row, needs_delete_policy))
        self.log.info("policy applied", model=model, id=row["id"], method=method)
        self.ctx.state.done += 1
        self.ctx.metrics.reconciled(self.ctx.name, "success")
        for policy, obj in objects:
            after = getattr(policy, "after_policy_save", None)
            if callable(after):
                self.call_user(after, obj, caller=Caller.SYNCHRONIZER)

    def _failed(self, key: Key, model: str, row: Row, exc: BaseException) -> None:
        deferred = isinstance(exc, DeferredException)
        report = self.log.info if deferred else self.log.warning
        report(
            "policy deferred" if deferred else "policy failed",
            model=model,
            id=row["id"],
            error=error_text(exc),
            exc_info=traceback_if_debug(self.log, exc),
        )
        self.ctx.state.failed += 1
        self.ctx.metrics.reconciled(self.ctx.name, "deferred" if deferred else "error")
        self.write_status(model, row["id"], policy_failure_fields(exc))
        self.retry[key] = (self.ctx.clock.now() + POLICY_RETRY, model)
        self._update_depth()
        self._arm_retry()


def _model_name(factory: StepFactory) -> str:
    return str(getattr(factory.cls, "model_name", None))
