"""The sync-step actor's cross-process claims on a shared backend, taken a drain at a time.

On a backend shared by replicas (PostgreSQL), an object is handled only under its
claim. The claims of a drain are taken ahead, as many objects as the drain takes,
and the claimed objects read afresh with them in one round trip (``claim_read``);
they are let go together once the drain's status writes are committed.

With workers (``concurrency`` > 1) the claim of an object handed to a worker stays
held across drains (:meth:`ClaimsAhead._hand_claim`), until the drain that commits
the status the worker sent back; that drain lets it go with its own claims, in the
same statement (:meth:`ClaimsAhead._release_drain`). A step that stops gives up the
claims of the objects still in its workers' hands: each worker lets its own go when
its handler returns (:meth:`ClaimsAhead._give_up_claims`, ``_workers.HeldClaim``).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from actors.store import Row

from ._child import ChildContext
from ._deps import Key
from ._queue import QueueActor
from ._workers import ACTOR, SHARED, WORKER, HeldClaim

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
        #: Claims of objects handed to workers (until their status is committed); claims to let
        #: go at the end of the drain under way (or at once when none comes), key -> model.
        self.held: dict[Key, HeldClaim] = {}
        self.releasing: dict[Key, str] = {}

    def _claim(self, key: Key, model: str) -> object:
        """The backend's cross-process claim on the object, held till the drain ends.

        The claims are taken ahead: the object's and those of the next queued objects, as
        many as the drain takes, claimed and read again in one round trip (see
        :meth:`_claim_ahead`). They are let go after the drain's status writes are
        committed, all in one statement (:meth:`_release_claims`), so the replica that
        claims an object next reads it synced. Where a claim of each object alone took a
        claim, a read, a commit of its own and a release, a drain takes two round trips
        for its claims, whatever its size.
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

    def _hand_claim(self, key: Key) -> HeldClaim | None:
        """The claim of the drain on ``key``, to go with its Work: held past the drain (None: no claim)."""
        model = self.claimed.pop(key, None)
        if model is None:
            return None
        claim = self.held[key] = HeldClaim(model, key[1])
        return claim

    def _claim_back(self, key: Key) -> None:
        """The object is back (its status committed, nothing to commit, its Work withdrawn): let its claim go.

        With the drain's claims, at its end. A worker that kept the claim lets it go itself;
        one whose Work was withdrawn never touches it.
        """
        claim = self.held.pop(key, None)
        if claim is not None and claim.settle(ACTOR):
            self.releasing[key] = claim.model

    def _release_drain(self) -> None:
        """Let go the drain's claims and those of the objects whose status it committed, together.

        An object claimed again by this drain (it was queued again) holds two claims: the
        second is let go in a statement of its own, so each claim is given back once.
        """
        again: dict[Key, str] = {}
        for key, model in self.releasing.items():
            if key in self.claimed:
                again[key] = model
            else:
                self.claimed[key] = model
        self.releasing = {}
        self._release_claims()
        if again:
            self.claimed = again
            self._release_claims()

    def _release_unless_draining(self) -> None:
        """Let go the claims waiting for a drain's end now, when no drain is coming."""
        if self.releasing and not self.drain_scheduled:
            self._release_drain()

    def _give_up_claims(self) -> None:
        """The actor stops: let go every claim it owns; those of objects still in a worker's hands go
        with their handler (the worker lets each go when its call returns)."""
        held, self.held = self.held, {}
        for key, claim in held.items():
            if not claim.settle(WORKER):  # handed back, not committed (the actor stops): ours
                self.releasing[key] = claim.model
        if not self.releasing and not self.claimed:
            return
        try:
            self._release_drain()
        except Exception as exc:  # a lost claim connection took its claims with it
            self.log.error("claim release failed", error=repr(exc))
