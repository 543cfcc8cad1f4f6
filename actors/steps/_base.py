"""What every kind of step shares: the accessor and logger the runtime hands it."""

from __future__ import annotations

from typing import Any

from actors.logs import get_logger

__all__ = ["StepBase", "model_names"]


class StepBase:
    """Keeps ``model_accessor`` and a logger (``log`` and ``logger``) given as keyword arguments.

    Subclasses written for the original framework may define ``__init__`` with
    no arguments; the runtime sets these attributes after construction then.
    """

    #: Seconds one handler call may run before the actor is replaced (None: the config's default).
    deadline: float | None = None
    #: Where the handlers run: "thread" (in the step's actor), "process" (a child process that
    #: a crash, ``os._exit()`` or a kill ends alone), or None (the config's ``runtime.isolation``).
    #: Not for event steps, which always run in a thread.
    isolation: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.model_accessor = kwargs.get("model_accessor")
        log = kwargs.get("log") or kwargs.get("logger")
        if log is None and args and hasattr(args[0], "info"):
            log = args[0]
        self.log = log or get_logger(f"actors.steps.{type(self).__name__}")
        self.logger = self.log


def model_names(value: Any) -> list[str]:
    """Model names from a model class, a name, or a list of them (``observes`` / ``provides``)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple | set | frozenset) else [value]
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, type) and isinstance(getattr(item, "_model", None), str):
            names.append(getattr(item, "_model"))  # noqa: B009
        elif isinstance(item, type):
            names.append(item.__name__)
        else:
            raise TypeError(f"expected a model class or name, got {item!r}")
    return names
