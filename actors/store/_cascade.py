"""What the XOS core does when objects are saved and deleted, beyond the bookkeeping.

- :func:`fill_owner`: a new ``ServiceInstance`` of a model with the option
  ``owner_class_name`` gets its ``owner`` from the one live service of that class,
  as XOS's ``ServiceInstance.set_owner`` does (the rule: :func:`choose_owner`,
  which the ORM's ``set_owner()`` applies too).
- :func:`cascade_delete`: deleting an object soft-deletes, recursively, every live
  object whose links point at it (XOS's links cascade, as Django's ``CASCADE``, unless
  the link's ``on_delete`` says ``SET_NULL`` (left alone) or ``PROTECT`` (refused));
  deleting a ``ServiceInstanceLink`` counts the deletion in its provider's
  ``link_deleted_count``, which model policies watch.

Both run inside the store's write path: :func:`fill_owner` before ``Store.create``
writes, :func:`cascade_delete` in the delete's transaction, through its ``Writer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from actors.models import Schema

from ._bookkeeping import DELETION_STATE, deletion
from ._errors import ValidationError
from ._integrity import linking, rules
from ._notices import ChangeNotice
from ._query import Condition, Query, WriteContext

if TYPE_CHECKING:
    from ._store import Store
    from ._write import Writer

__all__ = ["cascade_delete", "choose_owner", "fill_owner", "owner_to_fill", "soft_delete"]

#: The model option naming the class of service that owns a model's instances.
OWNER_OPTION = "owner_class_name"

#: The link whose deletion is counted on its provider, and the counter.
LINK_MODEL = "ServiceInstanceLink"
LINK_PROVIDER = "provider_service_instance_id"
LINK_COUNTER = "link_deleted_count"


def owner_class(schema: Schema, model: str) -> str | None:
    """The ``owner_class_name`` of ``model`` or of its nearest base that sets it."""
    for name in (model, *schema.ancestors(model)):
        value = schema[name].options.get(OWNER_OPTION)
        if value:
            return str(value)
    return None


def owner_to_fill(schema: Schema, model: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """``values`` without an ``owner_id`` of ``None`` when the store fills the owner of ``model``.

    For a client that checks values before sending them to a core (where
    :func:`fill_owner` runs): a missing owner is not an error for such a model.
    """
    if values.get("owner_id", 0) is None and model in schema and owner_class(schema, model):
        return {k: v for k, v in values.items() if k != "owner_id"}
    return values


def choose_owner(
    schema: Schema,
    model: str,
    current: int | None,
    *,
    is_live: Callable[[str, int], bool],
    first_live: Callable[[str], int | None],
) -> int | None:
    """The ``owner_class_name`` rule of XOS (``ServiceInstance.set_owner``): the owner id an object gets.

    ``current`` is kept for a model without the option, or when it already is a
    live object of the owner class (``is_live(class, id)``); otherwise the owner is
    the live object of that class with the lowest id (``first_live(class)``: XOS
    takes the first one, there is no error when several exist). Raises
    ``ValidationError`` when the class is not a model (``Cannot find owner class X``)
    or has no live object (``Cannot find eligible owner of class X``). The store
    applies it on create (:func:`fill_owner`), the ORM's ``set_owner()`` on demand.
    """
    wanted = owner_class(schema, model)
    if wanted is None:
        return current
    if wanted not in schema or schema[wanted].abstract:
        raise ValidationError(f"{model}: Cannot find owner class {wanted}")
    if current is not None and is_live(wanted, current):
        return current
    found = first_live(wanted)
    if found is None:
        raise ValidationError(f"{model}: Cannot find eligible owner of class {wanted}")
    return found


def fill_owner(store: Store, model: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """``values`` of a new object, with ``owner_id`` set by :func:`choose_owner`.

    Objects created deleted, and models without an ``owner_id``, are left alone.
    """
    schema = store.schema
    if "owner_id" not in schema.fields_by_column(model) or values.get("deleted"):
        return values

    def live(wanted: str) -> tuple[Condition, ...]:
        return (Condition("deleted", "eq", False),) if "deleted" in schema.fields_by_column(wanted) else ()

    def is_live(wanted: str, id: int) -> bool:
        return bool(store.select(wanted, Query(where=(*live(wanted), Condition("id", "eq", id)), limit=1)))

    def first_live(wanted: str) -> int | None:
        owners = store.select(wanted, Query(where=live(wanted), order_by=("id",), limit=1))
        return int(owners[0]["id"]) if owners else None

    current = values.get("owner_id")
    owner = choose_owner(schema, model, current, is_live=is_live, first_live=first_live)
    return values if owner == current else {**values, "owner_id": owner}


def cascade_delete(
    writer: Writer,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    model: str,
    row: dict[str, Any],
    now: float,
    ctx: WriteContext,
) -> None:
    """Soft-delete the live dependents of the deleted object ``row`` of ``model``, recursively.

    Each dependent is marked as :meth:`Store.delete` marks an object (``deleted``,
    ``enacted`` and ``policed`` cleared, a ``delete`` notice) and purged at once when
    it owes the backend nothing. Then, when ``row`` is a ``ServiceInstanceLink``,
    its provider (if live) gets ``link_deleted_count`` + 1 and a new ``updated``.
    """
    schema = writer.schema
    on_delete = rules(schema)
    seen = {(schema.root(model), row["id"])}
    stack = [(model, row["id"])]
    while stack:
        target, target_id = stack.pop()
        query = linking(writer.tables, schema, target, live=True)
        if query is None:
            continue
        statement, links = query
        for found in conn.execute(statement, {"_target": target_id}).mappings().all():
            link = links[found["k"]]
            leaf = writer.leaf(dict(found), link[0])
            key = (schema.root(leaf), found["id"])
            if key in seen:
                continue
            if on_delete[link] == "SET_NULL":
                continue  # the link is cleared when the target is purged
            if on_delete[link] == "PROTECT":
                raise ValidationError(
                    f"cannot delete {target} {target_id}: {leaf} {found['id']} links to it "
                    f"({link[1]}, on_delete PROTECT)"
                )
            seen.add(key)
            state = {name: found[name] for name in DELETION_STATE if name in found["columns"].split()}
            soft_delete(writer, conn, notices, leaf, state, now, ctx)
            stack.append((leaf, found["id"]))
    if schema.is_a(model, LINK_MODEL) and row.get(LINK_PROVIDER) is not None:
        _count_link_deletion(writer, conn, notices, row[LINK_PROVIDER], now, ctx)


def soft_delete(
    writer: Writer,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    model: str,
    row: Mapping[str, Any],
    now: float,
    ctx: WriteContext,
) -> None:
    """Mark the live object ``row`` of ``model`` deleted, as :meth:`Store.delete` and a cascade do.

    ``deleted`` set, ``enacted`` and ``policed`` cleared (``updated`` stamped for a
    client's delete), a ``delete`` notice, and a purge at once when the object owes
    the backend nothing; a model without ``deleted`` is purged.
    """
    if "deleted" not in row:
        writer.purge(conn, notices, model, row["id"], now, ctx.origin)
        return
    changes = deletion(ctx, now)
    writer.write_columns(conn, model, row["id"], changes)
    writer.journal.append(conn, notices, model, row["id"], "delete", now, ctx.origin)
    writer.reap_if_done(conn, notices, model, {**row, **changes}, now, ctx.origin)


def _count_link_deletion(
    writer: Writer,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    provider_id: int,
    now: float,
    ctx: WriteContext,
) -> None:
    schema = writer.schema
    provider_model = schema.field(LINK_MODEL, "provider_service_instance").link
    assert provider_model is not None
    provider = writer.row(conn, provider_model.model, provider_id, for_update=True)
    if provider is None or provider.get("deleted") or LINK_COUNTER not in provider:
        return
    leaf = writer.leaf(provider, provider_model.model)
    changes = {LINK_COUNTER: (provider[LINK_COUNTER] or 0) + 1, "updated": now}
    writer.write_columns(conn, leaf, provider_id, changes)
    writer.journal.append(conn, notices, leaf, provider_id, "update", now, ctx.origin)
