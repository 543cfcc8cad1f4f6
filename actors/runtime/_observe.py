"""The synchronizer's health checks, metrics sources and HTTP endpoint (see ``actors.observe``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors.api._webview import http_authorizer, object_args, problem_args
from actors.observe import NULL_METRICS, Health, Metrics, NullMetrics, ObserveServer, http_settings

from ._inspect import Rates, event_partitions, object_counts, object_page, problems, status_tree, why
from .messages import GetStatus, Phase

if TYPE_CHECKING:
    from ._synchronizer import Synchronizer

__all__ = ["build_observe", "web_routes"]

#: Child states in which a step does its work.
_UP = frozenset({Phase.RUNNING, Phase.DEGRADED, Phase.STALLED})


def build_observe(
    sync: Synchronizer, wanted: bool | None
) -> tuple[NullMetrics, Health, ObserveServer | None]:
    """The checks of ``sync``, and its metrics and HTTP endpoint (bound, not started) when served.

    ``wanted``: ``True`` serve unless ``http.enabled`` is false (the main job); ``None``
    serve only when the config has an ``http`` section (embedded); ``False`` never.
    """
    health = sync.health
    _add_checks(sync, health)
    settings = http_settings(sync.config)
    serve = wanted is not False and (settings.enabled if settings is not None else bool(wanted))
    if not serve:
        return NULL_METRICS, health, None
    metrics = Metrics()
    metrics.set_sources(children=lambda: sync.status().values(), objects=lambda: object_counts(sync))
    address = sync.config.settings.http.address  # the model's default when the config has no http section
    server = ObserveServer(
        address,
        metrics=metrics,
        health=health,
        routes=web_routes(sync),
        web=True,
        authorize=_authorizer(sync),
    )
    return metrics, health, server


def _add_checks(sync: Synchronizer, health: Health) -> None:
    """The checks of the synchronizer: ``healthz/supervisor``; ``readyz/store``, ``readyz/steps``
    and, with event steps, ``readyz/events``."""

    def supervisor() -> str | None:
        ref = sync.supervisor
        if ref is None:
            return "not started"
        ref.ask(GetStatus(), timeout=5)  # its mailbox answers
        return None

    def store() -> str | None:
        backend: Any = sync.model_accessor.backend
        backend.last_seq()  # the local store and the remote core both answer it
        return None

    def steps() -> str | None:
        problems = [f"{e.cls or e.path} not loaded: {e.message}" for e in sync.load_errors]
        if sync.supervisor is None:
            problems.append("not started")
        for child in sync.status().values():
            if child.kind != "changefeed" and child.state not in _UP:
                error = f" ({child.last_error})" if child.last_error else ""
                problems.append(f"{child.name} {child.state}{error}")
        return "; ".join(problems) or None

    def events() -> str | None:
        problems = [
            f"{c.name}: bus {c.detail.get('bus')}"
            for c in sync.status().values()
            if c.kind == "event" and str(c.detail.get("bus", "")).startswith("down")
        ]
        return "; ".join(problems) or None

    health.add("healthz", "supervisor", supervisor)
    health.add("readyz", "store", store)
    health.add("readyz", "steps", steps)
    if sync.config.settings.event_steps_dir:
        health.add("readyz", "events", events)


def web_routes(sync: Synchronizer) -> dict[str, Any]:
    """The JSON routes: ``/status``, ``/why/<model>/<id>`` and those of the web view: ``/live``,
    ``/problems[/<model>[/<step>]]``, ``/object/<model>/<id>``.

    ``/live`` is what the page polls: the tree, each child's rate over the last minute
    (sampled only while someone asks), the event steps' partitions and dead letters.
    In ``/problems``, ``_`` stands for any model.
    """
    rates = Rates()

    def status(args: list[str]) -> Any:
        if args:
            raise LookupError("expected /status")
        return status_tree(sync)

    def live(args: list[str]) -> Any:
        if args:
            raise LookupError("expected /live")
        tree = status_tree(sync)
        dead = {
            c.name: {"count": c.detail.get("dead_lettered", 0), "last": c.detail.get("dead_letters", [])}
            for c in tree.children
            if c.kind == "event"
        }
        return {
            "now": sync.clock.now(),
            "tree": tree,
            "rates": rates.sample(tree.children),
            "partitions": event_partitions(tree.children),
            "dead_letters": dead,
        }

    return {
        "status": status,
        "why": lambda args: why(sync, *object_args(args, "why")),
        "live": live,
        "problems": lambda args: problems(sync, *problem_args(args)),
        "object": lambda args: object_page(sync, *object_args(args, "object")),
    }


def _authorizer(sync: Synchronizer) -> Callable[[str | None, str], str | None]:
    """The API's check of a request's credentials (see :func:`~actors.api._webview.http_authorizer`).

    The API server's own authenticator when it is served (its tokens are valid here),
    else one built from ``api.users`` and ``api.anonymous_read``.
    """
    own: list[Any] = []

    def auth() -> Any:
        from actors.api import Authenticator

        served: Any = getattr(sync.api, "auth", None)
        if served is not None:
            return served
        if not own:
            api = sync.config.settings.api
            own.append(Authenticator(api.users, anonymous_read=api.anonymous_read))
        return own[0]

    return http_authorizer(auth)
