"""The seam under the ORM: where objects are read and written.

:class:`~actors.store.Store` is the local backend; the gRPC client of
``actors.api`` is the remote one. Both offer these methods with these meanings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from actors.models import Schema
from actors.store import ChangeNotice, Pending, Query, Row, Unsubscribe, WriteContext

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Reads and writes of model objects, by model name and stored column names."""

    @property
    def schema(self) -> Schema: ...

    def now(self) -> float: ...

    def get(self, model: str, id: int) -> Row | None: ...

    def select(self, model: str, query: Query = ...) -> list[Row]: ...

    def count(self, model: str, query: Query = ...) -> int: ...

    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[Row]: ...

    def create(self, model: str, values: Mapping[str, Any], ctx: WriteContext = ...) -> Row: ...

    def update(self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext = ...) -> Row: ...

    def delete(self, model: str, id: int, ctx: WriteContext = ..., *, purge: bool = False) -> None: ...

    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe: ...
