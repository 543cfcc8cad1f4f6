"""The change-feed actor: turns the store's change notices into :class:`Changed` messages.

It subscribes to the backend's notices and forwards each to the actors routed
for that model (or one of its bases). Routes are set by the supervisor with
:class:`Route` / :class:`Unroute` as children start, restart and fail.
"""

from __future__ import annotations

from typing import Any

import pykka

from actors.store import ChangeNotice, Unsubscribe

from ._child import ChildActor, ChildContext
from .messages import Changed, ChangedMany, Route, Unroute

__all__ = ["ChangeFeedActor"]


class ChangeFeedActor(ChildActor):
    kind = "changefeed"

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__(ctx)
        self.routes: dict[str, tuple[pykka.ActorRef[Any], frozenset[str]]] = {}
        self.by_model: dict[str, list[tuple[str, pykka.ActorRef[Any]]]] = {}
        self.unsubscribe: Unsubscribe | None = None
        self.handlers.update(
            {
                Changed: self.on_changed,
                ChangedMany: self.on_changed_many,
                Route: self.on_route,
                Unroute: self.on_unroute,
            }
        )

    def on_start(self) -> None:
        super().on_start()
        ref = self.actor_ref

        def forward(notice: ChangeNotice) -> None:
            ref.tell(Changed(notice))

        def forward_many(notices: list[ChangeNotice]) -> None:
            ref.tell(ChangedMany(tuple(notices)))

        forward.many = forward_many  # type: ignore[attr-defined]  # one message per commit (see Notifier)
        self.unsubscribe = self.ctx.accessor.subscribe(forward)

    def on_stop(self) -> None:
        super().on_stop()
        if self.unsubscribe is not None:
            self.unsubscribe()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.on_stop()
        super().on_failure(exc_type, exc_value, traceback)

    def on_route(self, message: Route) -> None:
        self.routes[message.name] = (message.target, message.models)
        self.by_model.clear()

    def on_unroute(self, message: Unroute) -> None:
        self.routes.pop(message.name, None)
        self.by_model.clear()

    def targets(self, model: str) -> list[tuple[str, pykka.ActorRef[Any]]]:
        """``(route name, actor)`` for every route of ``model`` or one of its bases."""
        cached = self.by_model.get(model)
        if cached is None:
            schema = self.ctx.accessor.schema
            cached = [
                (name, target)
                for name, (target, models) in self.routes.items()
                if schema.base_among(model, models) is not None
            ]
            self.by_model[model] = cached
        return cached

    def on_changed_many(self, message: ChangedMany) -> None:
        for notice in message.notices:
            self.on_changed(Changed(notice))

    def on_changed(self, message: Changed) -> None:
        origin = message.notice.origin
        for name, target in self.targets(message.notice.model):
            if name == origin:
                continue  # an actor's own status write is no news to it
            try:
                target.tell(message)
            except pykka.ActorDeadError:
                pass  # a child between death and restart: it re-reads its dirty set on start
