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

from collections.abc import Iterator

from actors.steps import Policy, StepFactory
from actors.store import Caller, Pending, Row, row_is_pending

from ._child import ChildContext, StepExit
from ._deps import Key
from ._queue import Item, QueueActor
from ._status import policy_failure_fields, policy_success_fields

__all__ = ["POLICY_RETRY", "PolicyActor"]

#: A failed or deferred policy runs again this many seconds after the attempt (the original's pass period).
POLICY_RETRY = 5.0


class PolicyActor(QueueActor):
    kind = "policy"

    def __init__(self, ctx: ChildContext, factories: list[StepFactory]) -> None:
        super().__init__(ctx, list(dict.fromkeys(_model_name(f) for f in factories)))
        self.factories = factories
        self.policies: list[Policy] | None = None

    @classmethod
    def interests(cls, factories: list[StepFactory]) -> frozenset[str]:
        return frozenset(_model_name(f) for f in factories)

    def _ensure_policies(self) -> list[Policy]:
        if self.policies is None:
            self.policies = [self.make_step(f) for f in self.factories]
        return self.policies

    # -- the queue's hooks ----------------------------------------------------
    def pending(self, reason: str) -> Iterator[tuple[Key, Item]]:
        """The objects the two policy queries find; one waiting for its retry stays waiting."""
        self._ensure_policies()
        backend = self.ctx.accessor.backend
        for model in self.models:
            if not self.ctx.accessor.has_model_class(model):
                continue
            for which in (Pending.POLICY, Pending.POLICY_DELETED):
                for row in backend.pending(model, which):
                    key = self.key(model, row["id"])
                    if key not in self.queue and key not in self.deferred:
                        yield key, Item(model, row)

    def changed(self, key: Key, model: str, kind: str) -> None:
        if key in self.deferred and kind != "delete":
            return  # its retry comes soon: at most one attempt per POLICY_RETRY (never spins)
        super().changed(key, model, kind)

    def process(self, key: Key, item: Item) -> bool:
        accessor = self.ctx.accessor
        schema = accessor.schema
        model = item.model
        row = item.row if item.row is not None else accessor.backend.get(model, key[1])
        if row is None:
            return True
        deleted = bool(row.get("deleted"))
        if not row_is_pending(row, "policy_deleted" if deleted else "policy"):
            return True
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
                obj = accessor.from_row(pmodel, prow)
                objects.append((policy, obj))
                self.call_user(handler, obj, caller=Caller.POLICY, deadline=getattr(policy, "deadline", None))
        except StepExit as exc:
            self._failed(key, model, row, exc)
            raise
        except Exception as exc:
            self._failed(key, model, row, exc)
            return True
        needs_delete_policy = any(hasattr(p, "handle_delete") for p in applicable)
        hooks = any(callable(getattr(p, "after_policy_save", None)) for p, _ in objects)
        # Stored before an after_policy_save hook runs: the hook sees the status.
        self.write_status(model, row["id"], policy_success_fields(row, needs_delete_policy), durable=hooks)
        self.log.info("policy applied", model=model, id=row["id"], method=method)
        self.ctx.state.done += 1
        self.ctx.metrics.reconciled(self.ctx.name, "success")
        for policy, obj in objects:
            after = getattr(policy, "after_policy_save", None)
            if callable(after):
                self.call_user(after, obj, caller=Caller.SYNCHRONIZER)
        return True

    def _failed(self, key: Key, model: str, row: Row, exc: BaseException) -> None:
        deferred = self.report_failure("policy", model, row["id"], exc)
        self.ctx.state.failed += 1
        self.ctx.metrics.reconciled(self.ctx.name, "deferred" if deferred else "error")
        self.write_status(model, row["id"], policy_failure_fields(exc))
        self.defer(key, Item(model), self.ctx.clock.now() + POLICY_RETRY)


def _model_name(factory: StepFactory) -> str:
    return str(getattr(factory.cls, "model_name", None))
