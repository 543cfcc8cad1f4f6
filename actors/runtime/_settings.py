"""Runtime settings: the ``runtime`` section of the config, plus the keys the actors read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.config import Config, EventBus, Runtime, Settings

__all__ = ["RuntimeSettings", "StepLimits"]


Graph = Mapping[str, tuple[tuple[str, str, str], ...]]


@dataclass(frozen=True)
class StepLimits:
    """How one sync step may run: ``concurrency`` objects at once, at most ``rate_limit`` calls/s."""

    concurrency: int = 1
    #: Handler calls a second (None: no limit), with up to ``rate_burst`` at once after a pause.
    rate_limit: float | None = None
    rate_burst: int = 1


class RuntimeSettings(Runtime):
    """The ``runtime`` section (its fields and defaults), plus the other keys the actors read.

    Build it with :meth:`from_config`; tests build it with keyword arguments
    (``RuntimeSettings(resync_period=0.1)``), checked like the configuration file.
    """

    backoff_disabled: bool = Settings.model_fields["backoff_disabled"].default
    """Retry a failing object at every pass instead of backing off."""
    name: str = "actors"
    """The synchronizer's name (the Kafka consumer group id)."""
    event_bus: EventBus = EventBus()
    """The ``event_bus`` section."""
    dependency_graph: Graph = {}
    """``{Model: ((DependsOnModel, src_accessor, dst_accessor), ...)}`` (given in any form of the file)."""

    def __init__(self, **fields: Any) -> None:
        if "dependency_graph" in fields:
            fields["dependency_graph"] = _entries(fields["dependency_graph"])
        super().__init__(**fields)

    @classmethod
    def from_config(cls, config: Config) -> RuntimeSettings:
        """The settings of a loaded configuration.

        Raises:
            ConfigError: if the dependency graph file became unreadable or invalid since loading.
        """
        settings = config.settings
        return cls.model_validate(
            {
                **dict(settings.runtime),
                "backoff_disabled": settings.backoff_disabled,
                "name": settings.name,
                "event_bus": settings.event_bus,
                "dependency_graph": _entries(config.dependency_graph),
            }
        )

    def limits(self, name: str, cls: Any) -> StepLimits:
        """The limits of step ``name``: ``runtime.steps.<name>``, else the class's attributes, else defaults.

        A step in a child process (``isolation = "process"``) runs one object at a time.
        """
        override = self.steps.get(name)

        def pick(key: str) -> Any:
            value = getattr(override, key) if override is not None else None
            return getattr(cls, key, None) if value is None else value

        concurrency = pick("concurrency") or self.step_concurrency
        if str(getattr(cls, "isolation", None) or self.isolation) == "process":
            concurrency = 1
        rate = pick("rate_limit")
        return StepLimits(
            int(concurrency), None if rate is None else float(rate), int(pick("rate_burst") or 1)
        )


def _entries(graph: Mapping[str, Any]) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Every entry as (Model, src, dst), as the file's entries may leave the accessors out."""
    padded = {
        m: ([d, None, None] if isinstance(d, str) else [*d, None, None] for d in deps)
        for m, deps in graph.items()
    }
    return {m: tuple((str(d[0]), str(d[1] or ""), str(d[2] or "")) for d in ds) for m, ds in padded.items()}
