"""The sync-step actor's cross-process claims on a shared backend, taken a drain at a time.

On a backend shared by replicas (PostgreSQL), an object is handled only under its
claim. The claims of a drain are taken ahead, ``drain_batch`` objects in one
statement, the claimed objects read afresh in one, and let go together once the
drain's status writes are committed.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from actors.store import Row

from ._child import ChildContext
from ._deps import Key
from ._queue import QueueActor
from ._workers import SHARED

__all__ = ["ClaimsAhead"]


class ClaimsAhead(QueueActor):
    """A queue actor that claims its objects on a shared backend, a drain's worth at a time."""

    def __init__(self, ctx: ChildContext, models: list[str]) -> None:
        super().__init__(ctx, models)
        #: Objects whose claim was refused: how many times in a row.
        self.refused: dict[Key, int] = {}
        #: Cross-process claims taken in this drain (key -> model), let go once its status writes
        #: are committed; the rows read after the drain's first claims, and the objects refused then.
        self.claimed: dict[Key, str] = {}
        self.fresh: dict[Key, Row | None] = {}
        self.refused_ahead: set[Key] = set()

    def _claim(self, key: Key, model: str) -> object:
        """The backend's cross-process claim on the object (see ``_workers.claim``), held till the drain ends.

        The claims are taken ahead: the object's and those of the next ``drain_batch - 1``
        queued objects, in one statement, and the claimed objects are read again in one
        (see :meth:`_claim_ahead`). They are let go after the drain's status writes are
        committed, all in one statement (:meth:`_release_claims`), so the replica that
        claims an object next reads it synced. That is three statements per
        ``drain_batch`` objects, where a claim of each object alone took a claim, a read,
        a commit of its own and a release.
        """
        backend = self.ctx.accessor.backend
        if not getattr(backend, "shared", False):
            return True
        if key not in self.claimed and key not in self.refused_ahead:
            self._claim_ahead([(key, model)])
        return SHARED if key in self.claimed else False

    def _claim_ahead(self, first: list[tuple[Key, str]]) -> None:
        """Claim the objects of ``first`` and the next queued ones, this drain's worth; read them afresh.

        Per model, one round trip claims them and reads them after the claim
        (``Store.claim_read``; the rows replace the queued ones; ``None``: purged). The
        others are held by another process: refused when their turn comes, in this drain.
        """
        backend: Any = self.ctx.accessor.backend  # a shared store (see _claim)
        wanted = first + [
            (key, item.model)
            for key, item in islice(self.queue.items(), self.batch_size() - len(first))
            if key not in self.claimed and key not in self.refused_ahead
        ]
        by_model: dict[str, list[Key]] = {}
        for key, model in wanted:
            by_model.setdefault(model, []).append(key)
        for model, keys in by_model.items():
            got: dict[int, Row | None] = backend.claim_read(model, [key[1] for key in keys])
            for key in keys:
                if key[1] not in got:
                    self.refused_ahead.add(key)
                    continue
                self.claimed[key] = model
                self.fresh[key] = got[key[1]]
                queued = self.queue.get(key)
                if queued is not None:
                    queued.row = self.fresh[key]

    def _release_claims(self) -> None:
        """Let go the claims of the drain (its status writes committed, or given up)."""
        self.fresh.clear()
        self.refused_ahead.clear()
        claimed, self.claimed = self.claimed, {}
        by_model: dict[str, list[int]] = {}
        for key, model in claimed.items():
            by_model.setdefault(model, []).append(key[1])
        backend: Any = self.ctx.accessor.backend  # a shared store (see _claim)
        for model, ids in by_model.items():
            backend.release_many(model, ids)
