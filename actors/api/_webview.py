"""The store-only parts of the web view, shared by a synchronizer's endpoint and ``core``'s.

What needs nothing but the store is here: the status fields explained in words
(:func:`explain_status`), an object's timeline from the journal (:func:`timeline`),
the rows whose last sync or policy run failed (:func:`failed_rows`), and the check of
a request's credentials by the API's :class:`~actors.api.Authenticator`
(:func:`http_authorizer`). The runtime's inspection (``actors.runtime._inspect``)
builds the synchronizer's view on them, adding the actor tree and ``why``; ``core``,
with no actor tree, serves :func:`core_routes`: the same page, each object's row
explained from its status fields alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.store import BackendCode, ChangeNotice, Condition, Query, Store, register_of, row_is_pending

from ._inspection import NO_SYNCHRONIZER

if TYPE_CHECKING:
    from ._auth import Authenticator

__all__ = [
    "PROBLEMS_LIMIT",
    "TIMELINE_LIMIT",
    "TIMELINE_NOTE",
    "ObjectPage",
    "Problem",
    "TimelineEntry",
    "core_routes",
    "explain_status",
    "failed_rows",
    "http_authorizer",
    "object_args",
    "timeline",
]

#: At most this many rows of the failing and blocked objects.
PROBLEMS_LIMIT = 200
#: Failed rows read per model and query for the failing and blocked objects.
FAILED_SCAN = 1000
#: At most this many journal entries on an object's page (the newest).
TIMELINE_LIMIT = 200
#: What ``core``'s page shows where a synchronizer's actor tree goes.
CORE_NOTE = f"core: {NO_SYNCHRONIZER}"


@dataclass(frozen=True)
class Problem:
    """One failing or blocked object, as the web view's table shows it."""

    model: str
    id: int
    #: The step it waits for (or ``policies``; ``None`` when not known, in ``core``).
    step: str | None
    reason: str
    attempts: int
    last_error: str | None
    #: When it is tried again (epoch seconds), during a backoff.
    next_retry: float | None
    #: What it waits for, in words (``blocked``, ``step_down``, ``other_replica`` ...).
    blocked_by: str | None
    message: str


@dataclass(frozen=True)
class TimelineEntry:
    """One moment of an object's life."""

    at: float
    #: ``create``, ``update``, ``delete``, ``purge`` (the journal's), or ``synced``, ``retry`` (its status).
    kind: str
    #: The writer the journal names (an actor), or ``None``.
    origin: str | None
    #: The entry in words.
    text: str


@dataclass(frozen=True)
class ObjectPage:
    """Everything the web view's page of one object shows."""

    model: str
    id: int
    #: The synchronizer's ``Why`` (``None`` in ``core``, where no synchronizer runs).
    why: Any
    #: Its fields (the model's own and the bookkeeping ones), as stored.
    fields: dict[str, Any]
    #: ``{"field", "value", "meaning"}`` of each status field, in words.
    status: list[dict[str, Any]]
    #: Newest first.
    timeline: list[TimelineEntry]
    #: What the timeline cannot show.
    timeline_note: str


#: The bookkeeping fields the object page explains, in this order.
_STATUS_FIELDS = (
    "backend_code",
    "backend_status",
    "backend_register",
    "updated",
    "enacted",
    "changed_by_step",
    "changed_by_policy",
    "policed",
    "policy_code",
    "policy_status",
    "no_sync",
    "no_policy",
    "lazy_blocked",
    "deleted",
    "backend_need_delete",
    "backend_need_reap",
    "backend_need_delete_policy",
)


def _when(value: Any) -> str:
    if not isinstance(value, int | float) or not value:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(value)))


_POLICY_CODES: dict[int, str] = {
    BackendCode.PENDING: "no policy run yet",
    BackendCode.OK: "its last policy run succeeded",
    BackendCode.ERROR: "its last policy run failed",
}


def explain_status(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{"field", "value", "meaning"}`` of each bookkeeping field of ``row``, the meaning in words."""
    g = row.get
    register = register_of(row)
    code = g("backend_code")
    codes: dict[int, str] = {
        BackendCode.PENDING: "not synced yet (or deferred by its step)",
        BackendCode.OK: "its last sync succeeded"
        if g("backend_status") in ("OK", None, "")
        else "its last sync failed with an innocuous error (retried, counted apart from errors)",
        BackendCode.ERROR: "its last sync failed (or an object it depends on failed)",
    }
    failures = int(register.get("failures") or 0)
    pending = row_is_pending(row, "sync")
    meaning: dict[str, str] = {
        "backend_code": codes.get(code, "unknown code") if isinstance(code, int) else "not set",
        "backend_status": "the step's last word: OK, or the last two distinct errors, ' // ' between them",
        "backend_register": f"{failures} failed attempt(s) since the last success"
        + (f"; next try at {_when(register.get('next_run'))}" if failures else "")
        + f"; last success {_when(register.get('last_success'))}",
        "updated": f"last saved by a client or a step at {_when(g('updated'))}",
        "enacted": (
            f"synced as of {_when(g('enacted'))}: "
            + ("changed since, so pending" if pending else "nothing newer to sync")
        )
        if g("enacted")
        else "never synced",
        "changed_by_step": f"a step last saved it at {_when(g('changed_by_step'))} (its policy runs again)"
        if g("changed_by_step")
        else "no step has saved it",
        "changed_by_policy": f"a model policy last saved it at {_when(g('changed_by_policy'))} (synced again)"
        if g("changed_by_policy")
        else "no model policy has saved it",
        "policed": f"its model policy ran as of {_when(g('policed'))}"
        if g("policed")
        else "no policy run yet",
        "policy_code": _POLICY_CODES.get(int(g("policy_code") or 0), "not set"),
        "policy_status": "the last policy run's result (a failure shows its traceback line)",
        "no_sync": "set: no step ever syncs it" if g("no_sync") else "not set: steps sync it",
        "no_policy": "set: no model policy runs on it" if g("no_policy") else "not set: its policy runs",
        "lazy_blocked": "set: synced only once something unblocks it" if g("lazy_blocked") else "not set",
        "deleted": "deleted: its step's delete_record runs, then the row goes"
        if g("deleted")
        else "not deleted",
        "backend_need_delete": "its step must run delete_record"
        if g("backend_need_delete")
        else "no delete owed",
        "backend_need_reap": "delete_record ran: the row is purged soon"
        if g("backend_need_reap")
        else "not yet",
        "backend_need_delete_policy": "its policy's handle_delete must run"
        if g("backend_need_delete_policy")
        else "no delete policy owed",
    }
    return [{"field": f, "value": g(f), "meaning": meaning[f]} for f in _STATUS_FIELDS if f in row]


#: What the journal does not record (shown under an object's timeline).
TIMELINE_NOTE = (
    "The store's journal records each write: create, update, delete or purge, its time, and the actor "
    "that wrote when it names itself (the sync steps and the policy actor do for their status writes). "
    "It does not record which fields changed, whether a status write was a success or a failure, errors "
    "of past attempts (the status fields keep the last two), or who made a save that names no writer "
    "(a client of the API, a step's or a policy's own save). The newest 100000 writes of the whole store "
    "are kept."
)


def _entry_text(kind: str, origin: str | None, steps: set[str]) -> str:
    if origin == "policies":
        return "status written by the policy actor (a model policy ran)"
    if origin in steps:
        return f"status written by {origin} (a sync attempt ended)"
    if origin:
        return f"{kind} by {origin}"
    return {
        "create": "created (by a client, a pull step or a policy)",
        "update": "saved (by a client, a step's or a policy's own save, or the store's cascade)",
        "delete": "deleted (soft delete: its delete is owed)",
        "purge": "purged: the row is gone",
    }.get(kind, kind)


def timeline(row: Mapping[str, Any], entries: Iterable[ChangeNotice], steps: set[str]) -> list[TimelineEntry]:
    """One object's life, newest first: its journal ``entries``, its next retry and last success.

    ``steps``: the names of the sync steps, whose journal entries are status writes.
    """
    register = register_of(row)
    rows: list[TimelineEntry] = []
    if (failures := int(register.get("failures") or 0)) and (next_run := register.get("next_run")):
        rows.append(
            TimelineEntry(float(next_run), "retry", None, f"next try (after {failures} failed attempt(s))")
        )
    for entry in entries:
        rows.append(
            TimelineEntry(entry.at, entry.kind, entry.origin, _entry_text(entry.kind, entry.origin, steps))
        )
    if last := register.get("last_success"):
        rows.append(TimelineEntry(float(last), "synced", None, "last successful sync"))
    rows.sort(key=lambda e: e.at, reverse=True)
    return rows


def failed_rows(
    backend: Any, synced: Iterable[str], policed: Iterable[str]
) -> list[tuple[str, dict[str, Any]]]:
    """``(model, row)`` of the objects whose last sync or policy run failed.

    ``synced``: the models whose failed rows still to sync count (code 2: failed, also
    when an object it depends on failed; code 1 and not OK: failed innocuously);
    ``policed``: those whose failed policy runs count. Asked of the store, so the rows
    of a big backlog are not read. ``backend``: a store, or a synchronizer's ORM backend.
    """
    found: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    failed = (
        Query(where=(Condition("backend_code", "eq", BackendCode.ERROR.value),), limit=FAILED_SCAN),
        Query(
            where=(Condition("backend_code", "eq", BackendCode.OK.value),),
            exclude=(Condition("backend_status", "eq", "OK"),),
            limit=FAILED_SCAN,
        ),
    )
    schema = backend.schema
    for model in synced:
        if model not in schema:
            continue
        for query in failed:
            for row in backend.select(model, query):
                if row_is_pending(row, "sync_deleted" if row.get("deleted") else "sync"):
                    found.setdefault((model, int(row["id"])), (model, dict(row)))
    for model in policed:
        if model not in schema:
            continue
        query = Query(where=(Condition("policy_code", "eq", BackendCode.ERROR.value),), limit=FAILED_SCAN)
        for row in backend.select(model, query):
            found.setdefault((model, int(row["id"])), (model, dict(row)))
    return list(found.values())


def object_args(args: list[str], route: str) -> tuple[str, int]:
    """``(model, id)`` of ``/<route>/<model>/<id>`` (``ValueError`` naming what is wrong)."""
    if len(args) != 2:
        raise ValueError(f"expected /{route}/<model>/<id>")
    model, text = args
    if not text.isdigit():
        raise ValueError(f"object id {text!r}: expected a whole number")
    return model, int(text)


def problem_args(args: list[str]) -> tuple[str | None, str | None]:
    """``(model, step)`` of ``/problems[/<model>[/<step>]]``, ``None`` if left out (``_``: any model)."""
    if len(args) > 2:
        raise ValueError("expected /problems, /problems/<model> or /problems/<model>/<step>")
    model = args[0] if args and args[0] != "_" else None
    return model, args[1] if len(args) > 1 else None


def http_authorizer(auth: Callable[[], Authenticator]) -> Callable[[str | None, str], str | None]:
    """The ``authorize`` of an :class:`~actors.observe.ObserveServer`: the API's check of credentials.

    Basic, or Bearer with a token of ``login``; ``auth()`` gives the authenticator
    (the API server's, so its tokens are valid here). ``None`` lets a request in,
    else the reason it is refused.
    """

    def authorize(header: str | None, host: str) -> str | None:
        try:
            auth().authenticate([("authorization", header)] if header else [], f"ipv4:{host}:0")
        except Exception as exc:  # the API's ApiError: UNAUTHENTICATED (or throttled), with its message
            return str(exc)
        return None

    return authorize


# -- core: the page without a synchronizer ------------------------------------------------------------------


def _core_problem(model: str, row: Mapping[str, Any], now: float) -> Problem:
    register = register_of(row)
    attempts = int(register.get("failures") or 0)
    next_run = register.get("next_run")
    to_sync = row_is_pending(row, "sync_deleted" if row.get("deleted") else "sync")
    if to_sync and row.get("backend_code") in (BackendCode.OK, BackendCode.ERROR):
        status = str(row.get("backend_status") or "") or None
        until = float(next_run) if isinstance(next_run, int | float) and next_run > now else None
        reason = "backoff" if until else "failed"
        when = f"; tried again at {_when(until)}" if until else ""
        message = f"{model} {row['id']}: its last sync failed ({attempts} attempt(s)){when}"
        return Problem(model, int(row["id"]), None, reason, attempts, status, until, None, message)
    policy = str(row.get("policy_status") or "").strip().splitlines()
    last = policy[-1] if policy else None
    message = f"{model} {row['id']}: its model policy failed"
    return Problem(
        model, int(row["id"]), "policies", "waiting_for_policy", attempts, last, None, None, message
    )


def core_routes(store: Store, name: str = "core") -> dict[str, Callable[[list[str]], Any]]:
    """The web view's JSON routes of ``core`` over ``store``: ``/live``, ``/problems``, ``/object``.

    ``/live`` has no actor tree (``note`` says so); ``/problems`` lists the objects of
    every model whose status fields say their last sync or policy run failed (no step,
    nothing about what blocks them: that is the synchronizer's to say); ``/object``
    is the page of an object without ``why``.
    """

    def live(args: list[str]) -> Any:
        if args:
            raise LookupError("expected /live")
        tree = {"name": name, "state": "running", "children": [], "load_errors": []}
        return {
            "now": time.time(),
            "tree": tree,
            "note": CORE_NOTE,
            "rates": {},
            "partitions": [],
            "dead_letters": {},
        }

    def problem_rows(args: list[str]) -> Any:
        model, step = problem_args(args)
        names = [m.name for m in store.schema.concrete()]
        now = time.time()
        rows: list[Problem] = []
        for leaf, row in failed_rows(store, names, names):
            if (row.get("leaf_model_name") or leaf) != leaf:  # a derived model's row: counted as its own
                continue
            if model and not store.schema.is_a(leaf, model):
                continue
            problem = _core_problem(leaf, row, now)
            if step and problem.step != step:
                continue
            rows.append(problem)
            if len(rows) >= PROBLEMS_LIMIT:
                break
        rows.sort(key=lambda p: (p.model, p.id))
        return rows

    def page(args: list[str]) -> Any:
        model, id = object_args(args, "object")
        if model not in store.schema:
            raise LookupError(f"no model named {model}")
        row = store.get(model, id)
        if row is None:
            raise LookupError(f"{model} {id} not found")
        leaf = str(row.get("leaf_model_name") or model)
        entries = store.journal_of(leaf, id, TIMELINE_LIMIT)
        return ObjectPage(
            model, id, None, dict(row), explain_status(row), timeline(row, entries, set()), TIMELINE_NOTE
        )

    return {"live": live, "problems": problem_rows, "object": page}
