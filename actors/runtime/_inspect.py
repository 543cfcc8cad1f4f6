"""Looking inside a running synchronizer: its actor tree, and why an object is not enacted.

Both return plain dataclasses (served as JSON at ``/status`` and ``/why/<model>/<id>``
by the HTTP endpoint; the ``Core/Status`` and ``Core/Why`` RPCs build on them).
The object counts of ``actors_objects`` are computed here too, at scrape time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.store import Condition, Pending, Query, row_is_pending

from ._deps import Dependencies
from ._status import SEPARATOR, register_of
from .messages import ChildStatus

if TYPE_CHECKING:
    from ._synchronizer import Synchronizer

__all__ = ["REASONS", "StatusTree", "Why", "object_counts", "status_tree", "why"]

#: Every ``Why.reason``, roughly in the order they are looked for.
REASONS = (
    "enacted",  # nothing to wait for
    "no_sync",  # no_sync is set: never synced
    "lazy_blocked",  # lazy_blocked is set: synced only once something unblocks it
    "deleting",  # deleted, its delete_record owed
    "no_step",  # no loaded sync step observes the model
    "step_down",  # the sync steps observing it are failed or restarting
    "other_replica",  # another replica sharing the store owns it
    "backoff",  # failed, tried again at `until`
    "blocked",  # waits for an object it depends on (or, deleted, for its dependents' deletes)
    "waiting_for_policy",  # its model policy has not run (or failed and retries)
    "queued",  # in the step's work queue (or being synced now)
)


@dataclass(frozen=True)
class StatusTree:
    """The supervisor and every child, as :meth:`Synchronizer.status` sees them."""

    name: str
    #: ``running`` or ``stopped``.
    state: str
    children: list[ChildStatus] = field(default_factory=list)
    #: Step files or classes that could not be loaded: ``{"path", "step", "error"}``.
    load_errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Why:
    """Why one object is (not) enacted: ``reason`` is one of :data:`REASONS`."""

    model: str
    id: int
    reason: str
    #: One line for a person.
    message: str
    #: The sync step (or ``policies``) the reason is about.
    step: str | None = None
    #: ``backoff``: when it is tried again (the synchronizer's clock, epoch seconds).
    until: float | None = None
    #: Failed attempts since the last success.
    attempts: int = 0
    #: The last two distinct errors, oldest first.
    errors: list[str] = field(default_factory=list)
    #: ``blocked``: the object it waits for, ``[model, id]``.
    blocked_by: list[Any] | None = None
    #: ``other_replica``: the replica id that owns it.
    owner: int | None = None


def status_tree(sync: Synchronizer) -> StatusTree:
    """The actor tree of ``sync``: every child's state, restarts, last error, queue depth, counts."""
    children = sorted(sync.status().values(), key=lambda c: (c.kind != "changefeed", c.name))
    errors = [{"path": e.path, "step": e.cls, "error": e.message} for e in sync.load_errors]
    state = "running" if sync.supervisor is not None else "stopped"
    return StatusTree(sync.settings.name, state, children, errors)


def _observers(sync: Synchronizer, model: str) -> list[str]:
    """Names of the loaded sync steps observing ``model`` (or a model it derives from)."""
    schema = sync.model_accessor.schema
    loaded = sync._loaded
    steps = loaded.sync_steps if loaded is not None else []
    return [
        f.name
        for f in steps
        if any(m in schema and schema.is_a(model, m) for m in getattr(f.cls, "observed_model_names")())  # noqa: B009
    ]


def _policy_applies(sync: Synchronizer, model: str) -> bool:
    schema = sync.model_accessor.schema
    loaded = sync._loaded
    lineage = {model, *schema.ancestors(model)}
    return any(getattr(f.cls, "model_name", None) in lineage for f in (loaded.policies if loaded else []))


def why(sync: Synchronizer, model: str, id: int) -> Why:
    """Why object ``id`` of ``model`` is not enacted (or that it is).

    Raises:
        LookupError: no such model, or no such object.
    """
    accessor = sync.model_accessor
    schema = accessor.schema
    if model not in schema:
        raise LookupError(f"no model named {model}")
    row = accessor.backend.get(model, int(id))
    if row is None:
        raise LookupError(f"{model} {id} not found")
    leaf = row.get("leaf_model_name") or model
    leaf = leaf if leaf in schema else model
    register = register_of(row)
    attempts = int(register.get("failures") or 0)
    status = str(row.get("backend_status") or "")
    errors = [e for e in status.split(SEPARATOR) if e][-2:] if attempts else []
    base: dict[str, Any] = {"model": model, "id": int(id), "attempts": attempts, "errors": errors}
    policy_owed = _policy_applies(sync, leaf) and row_is_pending(
        row, "policy_deleted" if row.get("deleted") else "policy"
    )
    if row.get("no_sync") and not row.get("deleted"):
        return Why(reason="no_sync", message=f"{model} {id} has no_sync set: no step syncs it", **base)
    if row.get("lazy_blocked") and not row.get("deleted"):
        return Why(reason="lazy_blocked", message=f"{model} {id} has lazy_blocked set", **base)
    which = "sync_deleted" if row.get("deleted") else "sync"
    if not row_is_pending(row, which):
        if policy_owed:
            return _policy(sync, model, id, row, base)
        done = "deleted" if row.get("deleted") else "enacted"
        return Why(reason="enacted", message=f"{model} {id} is {done}: nothing to wait for", **base)
    steps = _observers(sync, leaf)
    if not steps:
        if policy_owed:
            return _policy(sync, model, id, row, base)
        return Why(reason="no_step", message=f"no loaded sync step observes {leaf}", **base)
    status_by_name = sync.status()
    up = [s for s in steps if s in status_by_name and status_by_name[s].state not in ("failed", "restarting")]
    if not up:
        child = status_by_name.get(steps[0])
        state = child.state if child is not None else "not started"
        error = f" ({child.last_error})" if child is not None and child.last_error else ""
        return Why(reason="step_down", step=steps[0], message=f"step {steps[0]} is {state}{error}", **base)
    step = up[0]
    backend = accessor.backend
    if getattr(backend, "shared", False) and hasattr(backend, "spread"):
        _mine, theirs = backend.spread(step, [int(id)])
        if theirs:
            me, members = getattr(backend, "replicas")(step)  # noqa: B009 - shared backends have it
            others = sorted(m for m in members if m != me)
            return Why(
                reason="other_replica",
                step=step,
                owner=others[0] if len(others) == 1 else None,
                message=f"{model} {id} belongs to another replica of {step} "
                f"({len(members)} share the store); this one takes it only when out of work of its own",
                **base,
            )
    now = sync.clock.now()
    next_run = register.get("next_run") or 0
    if not sync.settings.backoff_disabled and isinstance(next_run, int | float) and next_run > now:
        return Why(
            reason="backoff",
            step=step,
            until=float(next_run),
            message=f"{model} {id} failed {attempts} time(s); tried again in {next_run - now:.0f} s"
            + (f": {errors[-1]}" if errors else ""),
            **base,
        )
    deps = Dependencies(accessor, sync.settings.dependency_graph)
    obj = accessor.get_model_class(model)._from_row(row)
    blockers = deps.undeleted_dependents(obj) if row.get("deleted") else deps.unsynced_dependencies(obj)
    if blockers:
        other, other_row = blockers[0]
        what = "the delete of" if row.get("deleted") else "the sync of"
        failed = (
            f" (which failed: {other_row.get('backend_status')})"
            if other_row.get("backend_code") == 2
            else ""
        )
        return Why(
            reason="blocked",
            step=step,
            blocked_by=[other, other_row["id"]],
            message=f"{model} {id} waits for {what} {other} {other_row['id']}{failed}",
            **base,
        )
    if policy_owed:
        return _policy(sync, model, id, row, base)
    depth = status_by_name[step].queue_depth
    if row.get("deleted"):
        return Why(
            reason="deleting", step=step, message=f"{model} {id} is deleted; {step} runs its delete", **base
        )
    return Why(
        reason="queued", step=step, message=f"{model} {id} is queued in {step} ({depth} waiting)", **base
    )


def _policy(sync: Synchronizer, model: str, id: int, row: Any, base: dict[str, Any]) -> Why:
    failed = row.get("policy_code") == 2
    text = str(row.get("policy_status") or "").strip().splitlines()
    detail = f" (it failed: {text[-1]}; tried again soon)" if failed and text else ""
    return Why(
        reason="waiting_for_policy",
        step="policies",
        message=f"{model} {id} waits for its model policy{detail}",
        **base,
    )


def object_counts(sync: Synchronizer) -> dict[tuple[str, str], int]:
    """``{(model, state): n}`` for the models the sync steps observe (``actors_objects``).

    ``pending``: to sync, never failed; ``error``: its last attempt failed; ``deferred``:
    its step deferred it; ``enacted``: synced and unchanged since.
    """
    loaded = sync._loaded
    backend = sync.model_accessor.backend
    steps = loaded.sync_steps if loaded else []
    models = sorted({m for f in steps for m in getattr(f.cls, "observed_model_names")()})  # noqa: B009
    counts: dict[tuple[str, str], int] = {}
    for model in models:
        states: Counter[str] = Counter({"enacted": 0, "pending": 0, "error": 0, "deferred": 0})
        pending = backend.pending(model, Pending.SYNC)
        for row in pending:
            failures = register_of(row).get("failures")
            code = row.get("backend_code")
            states["error" if failures and code in (1, 2) else "deferred" if failures else "pending"] += 1
        synced = backend.count(
            model, Query(where=(Condition("deleted", "eq", False), Condition("enacted", "isnull", False)))
        )
        states["enacted"] = max(0, synced - sum(1 for row in pending if row.get("enacted") is not None))
        counts.update({(model, state): n for state, n in states.items()})
    return counts
