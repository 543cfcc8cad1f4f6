"""Runtime settings: the ``runtime`` section of the config, plus the keys the actors read."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_STEP_CONCURRENCY", "RuntimeSettings", "StepLimits", "load_dependency_graph"]


#: Objects a sync step handles at once by default: one, as before (see docs/steps.md, "Concurrency
#: and rate limits"). Workers cost a no-op step about a fifth of its throughput and a reaction
#: 0.1 ms more, and step code that is not thread-safe fails only under load; an I/O-bound step
#: says ``concurrency = 8`` (or more), or the config sets ``runtime.step_concurrency``.
DEFAULT_STEP_CONCURRENCY = 1


@dataclass(frozen=True)
class StepLimits:
    """How one sync step may run: ``concurrency`` objects at once, at most ``rate_limit`` calls/s."""

    concurrency: int = 1
    #: Handler calls a second (None: no limit), with up to ``rate_burst`` at once after a pause.
    rate_limit: float | None = None
    rate_burst: int = 1


@dataclass(frozen=True)
class RuntimeSettings:
    resync_period: float = 30.0
    step_deadline: float = 600.0
    restart_backoff: float = 1.0
    max_restarts: int = 5
    restart_window: float = 60.0
    pull_period: float = 5.0
    shutdown_timeout: float = 10.0
    backoff_disabled: bool = False
    #: Where step handlers run unless a step says: "thread" (in the actor) or "process" (a child).
    isolation: str = "thread"
    #: Objects one sync step handles at once, unless the step (or ``steps``) says otherwise.
    step_concurrency: int = DEFAULT_STEP_CONCURRENCY
    #: Per step class name: ``concurrency``, ``rate_limit``, ``rate_burst`` (over the class's own).
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The synchronizer's name (the Kafka consumer group id).
    name: str = "actors"
    #: The ``event_bus`` section: kind, endpoint, dead_letter_topic, max_retries, retry_backoff.
    event_bus: Mapping[str, Any] = field(default_factory=dict)
    #: ``{Model: [(DependsOnModel, src_accessor, dst_accessor), ...]}``
    dependency_graph: Mapping[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> RuntimeSettings:
        """Read settings from an ``actors.config.Config`` (anything with ``get(key, default)``)."""
        runtime = config.get("runtime", None) or {}
        graph = config.get("dependency_graph", None)
        derived = ("backoff_disabled", "dependency_graph", "name", "event_bus")
        known = {f for f in cls.__dataclass_fields__ if f not in derived}
        return cls(
            **{k: v for k, v in runtime.items() if k in known},
            backoff_disabled=bool(config.get("backoff_disabled", False)),
            name=str(config.get("name", None) or "actors"),
            event_bus=dict(config.get("event_bus", None) or {}),
            dependency_graph=load_dependency_graph(graph, getattr(config, "base_dir", None)),
        )

    def limits(self, name: str, cls: Any) -> StepLimits:
        """The limits of step ``name``: ``runtime.steps.<name>``, else the class's attributes, else defaults.

        A step in a child process (``isolation = "process"``) runs one object at a time.
        """
        override = self.steps.get(name) or {}

        def pick(key: str) -> Any:
            value = override.get(key)
            return getattr(cls, key, None) if value is None else value

        concurrency = pick("concurrency") or self.step_concurrency
        if str(getattr(cls, "isolation", None) or self.isolation) == "process":
            concurrency = 1
        rate = pick("rate_limit")
        return StepLimits(
            int(concurrency), None if rate is None else float(rate), int(pick("rate_burst") or 1)
        )


def load_dependency_graph(
    value: str | Mapping[str, Any] | None, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """A dependency graph from a JSON file path or a mapping; :class:`ValueError` naming the problem."""
    if value is None:
        return {}
    source = "dependency_graph"
    if isinstance(value, str | os.PathLike):
        path = os.path.join(base_dir or ".", value)
        source = str(path)
        with open(path, encoding="utf-8") as fh:
            try:
                value = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: expected a mapping of model name to dependency list")
    graph: dict[str, tuple[tuple[str, str, str], ...]] = {}
    for model, deps in value.items():
        entries = []
        for dep in deps or ():
            if isinstance(dep, str):
                dep = [dep, "", ""]
            if not isinstance(dep, list | tuple) or not 1 <= len(dep) <= 3:
                raise ValueError(
                    f"{source}: {model}: expected [Model, src_accessor, dst_accessor], got {dep!r}"
                )
            padded = [*dep, "", ""][:3]
            entries.append((str(padded[0]), str(padded[1] or ""), str(padded[2] or "")))
        graph[str(model)] = tuple(entries)
    return graph
