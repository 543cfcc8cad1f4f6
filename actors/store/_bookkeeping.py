"""The bookkeeping rules of the original: what a create, an update and a delete stamp.

- A create fills the defaults and ``created``, ``updated`` and ``leaf_model_name``.
- A client's write bumps ``updated``; a synchronizer's does not, unless it asks
  (``always_update_timestamp``).
- A step's write of a field that is not bookkeeping sets ``changed_by_step``, a
  policy's ``changed_by_policy``.
- A delete sets ``deleted`` and clears ``enacted`` and ``policed``; the object is purged
  once it owes nothing (:func:`reap_ready`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from actors.models import Schema

from ._errors import ValidationError
from ._query import Caller, WriteContext
from ._values import check_column

__all__ = ["DELETION_STATE", "Bookkeeping", "Clock", "deletion", "reap_ready"]


#: The columns that decide how an object is deleted and when it is purged: what a
#: cascade reads of each dependent, and what a write reads back.
DELETION_STATE = (
    "id",
    "leaf_model_name",
    "deleted",
    "backend_need_delete",
    "backend_need_reap",
    "backend_need_delete_policy",
    "policed",
)


class Clock:
    """Timestamps from ``clock``, each strictly greater than every one given before."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            now = max(self._clock(), self._last + 1e-6)
            self._last = now
            return now


class Bookkeeping:
    """The rules above for the models of ``schema`` (never changed once built: see :meth:`of`)."""

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def of(schema: Schema) -> Bookkeeping:
        """``Bookkeeping(schema)``, shared by the stores of one schema."""
        return Bookkeeping(schema)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        concrete = [m.name for m in schema.concrete()]
        #: Columns whose writes are bookkeeping themselves (they set no ``changed_by_*``).
        self._marks = {
            model: {
                f.column
                for f in schema.fields(model).values()
                if f.options.get("bookkeeping_state") or f.options.get("feedback_state")
            }
            for model in concrete
        }
        self._defaults = {
            model: {column: f.default for column, f in schema.fields_by_column(model).items()}
            for model in concrete
        }

    def new_row(self, model: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The columns of a new object: ``values`` checked, the defaults, the required ones there."""
        row: dict[str, Any] = {}
        for column, value in values.items():
            if column == "id" and value is None:
                continue
            row[column] = check_column(self.schema, model, column, value)
        for column, default in self._defaults[model].items():
            if column not in row:
                row[column] = default
        for column, f in self.schema.fields_by_column(model).items():
            if row.get(column) is None and not f.nullable:
                raise ValidationError(f"{model}.{f.name} is required")
        return row

    def stamp_create(
        self, model: str, row: dict[str, Any], ctx: WriteContext, now: float, written: set[str]
    ) -> None:
        """Stamp a new object's ``created``, ``updated``, ``leaf_model_name`` and ``changed_by_*``."""
        fields = self.schema.fields_by_column(model)
        if "created" in fields:
            row["created"] = now
        if "updated" in fields:
            row["updated"] = now
        if "leaf_model_name" in fields:
            row["leaf_model_name"] = model
        self._stamp(model, row, ctx, now, written)

    def changes(self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext) -> dict[str, Any]:
        """The columns an update writes: ``values`` (only ``ctx.update_fields`` of them) checked."""
        if ctx.update_fields is not None:
            for name in ctx.update_fields:
                if name not in self.schema.fields_by_column(model):
                    raise ValidationError(f"model {model} has no field {name!r}")
            values = {k: v for k, v in values.items() if k in ctx.update_fields}
        changes: dict[str, Any] = {}
        for column, value in values.items():
            if column == "id":
                if value is not None and value != id:
                    raise ValidationError(f"{model}.id cannot be changed")
                continue
            changes[column] = check_column(self.schema, model, column, value)
        changes.pop("leaf_model_name", None)
        return changes

    def stamp_update(self, model: str, changes: dict[str, Any], ctx: WriteContext, now: float) -> None:
        """Stamp an update's ``updated`` (a client's, or when asked) and ``changed_by_*``."""
        if "updated" in self.schema.fields_by_column(model) and bumps_updated(ctx):
            changes["updated"] = now
        self._stamp(model, changes, ctx, now, set(changes))

    def _stamp(
        self, model: str, row: dict[str, Any], ctx: WriteContext, now: float, written: set[str]
    ) -> None:
        if ctx.caller not in (Caller.STEP, Caller.POLICY):
            return
        if not written - self._marks.get(model, set()) - {"id"}:
            return
        column = "changed_by_step" if ctx.caller is Caller.STEP else "changed_by_policy"
        if column in self.schema.fields_by_column(model):
            row[column] = now


def bumps_updated(ctx: WriteContext) -> bool:
    """Whether a write in ``ctx`` sets ``updated``: a client's, or one that asks."""
    return ctx.caller is Caller.CLIENT or ctx.always_update_timestamp


def deletion(ctx: WriteContext, now: float) -> dict[str, Any]:
    """What a soft delete writes: ``deleted`` set, ``enacted`` and ``policed`` cleared (and ``updated``)."""
    changes: dict[str, Any] = {"deleted": True, "enacted": None, "policed": None}
    if bumps_updated(ctx):
        changes["updated"] = now
    return changes


def reap_ready(row: Mapping[str, Any]) -> bool:
    """Whether a deleted object owes nothing: its backend delete and delete policy (if owed) are done."""
    synced_away = not row.get("backend_need_delete") or row.get("backend_need_reap")
    policed_away = not row.get("backend_need_delete_policy") or row.get("policed") is not None
    return bool(synced_away and policed_away)
