"""The synchronizer's health checks, metrics sources and HTTP endpoint (see ``actors.observe``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.observe import NULL_METRICS, Health, Metrics, NullMetrics, ObserveServer, http_settings

from ._inspect import object_counts, status_tree, why
from .messages import GetStatus

if TYPE_CHECKING:
    from ._synchronizer import Synchronizer

__all__ = ["build_observe", "readiness_checks"]

#: Child states in which a step does its work.
_UP = frozenset({"running", "degraded", "stalled"})


def build_observe(
    sync: Synchronizer, wanted: bool | None
) -> tuple[NullMetrics, Health, ObserveServer | None]:
    """The checks of ``sync``, and its metrics and HTTP endpoint (bound, not started) when served.

    ``wanted``: ``True`` serve unless ``http.enabled`` is false (the main job); ``None``
    serve only when the config has an ``http`` section (embedded); ``False`` never.
    """
    health = sync.health
    for kind, name, check in readiness_checks(sync):
        health.add(kind, name, check)
    settings = http_settings(sync.config)
    serve = wanted is not False and (settings.enabled if settings is not None else bool(wanted))
    if not serve:
        return NULL_METRICS, health, None
    metrics = Metrics()
    metrics.set_sources(children=lambda: sync.status().values(), objects=lambda: object_counts(sync))
    address = settings.address if settings is not None else "127.0.0.1:8080"
    server = ObserveServer(
        address,
        metrics=metrics,
        health=health,
        routes={"status": lambda args: _status(sync, args), "why": lambda args: _why(sync, args)},
    )
    return metrics, health, server


def readiness_checks(sync: Synchronizer) -> list[tuple[Any, str, Any]]:
    """``(kind, name, check)`` of the synchronizer: ``healthz/supervisor``; ``readyz/store``,
    ``readyz/steps`` and, with event steps, ``readyz/events``."""

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

    checks: list[tuple[Any, str, Any]] = [
        ("healthz", "supervisor", supervisor),
        ("readyz", "store", store),
        ("readyz", "steps", steps),
    ]
    if sync.config.settings.event_steps_dir:
        checks.append(("readyz", "events", events))
    return checks


def _status(sync: Synchronizer, args: list[str]) -> Any:
    if args:
        raise LookupError("expected /status")
    return status_tree(sync)


def _why(sync: Synchronizer, args: list[str]) -> Any:
    if len(args) != 2:
        raise ValueError("expected /why/<model>/<id>")
    model, text = args
    if not text.isdigit():
        raise ValueError(f"object id {text!r}: expected a whole number")
    return why(sync, model, int(text))
