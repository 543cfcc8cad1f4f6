"""The base classes of sync steps, policies and pull steps, and the exceptions steps raise.

A :class:`SyncStep` maps objects of the models it observes onto a backend; a
:class:`Policy` holds post-save hooks for the objects of one model; a
:class:`PullStep` is called on a timer to bring the environment's state into models.
:class:`DeferredException` and :class:`InnocuousException` tell the framework how a
failure should be treated. :class:`StepBase` is what every kind of step shares: the
accessor and logger the runtime hands it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from actors.logs import get_logger


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


class DeferredException(Exception):
    """Work is still in progress: ``backend_code = 0``, retried with the short backoff."""


class InnocuousException(Exception):
    """A benign failure: ``backend_code = 1``, retried with the short backoff."""


class SyncStep(StepBase):
    """Subclass it, set ``observes`` (and usually ``provides``), override the two methods.

    ``sync_record(o)`` runs for each object that changed since it was last
    enacted, ``delete_record(o)`` for each deleted object that had reached the
    backend. Raise to report a failure (see ``DeferredException`` and
    ``InnocuousException``); return to report success. A step that does not
    override ``delete_record`` lets deleted objects go (the default logs), as
    the original's did.
    """

    observes: ClassVar[Any] = None
    provides: ClassVar[Any] = ()
    #: Accepted for compatibility with the original; reaction here is immediate.
    requested_interval: ClassVar[float] = 0
    #: Objects handled at once (each in a worker with its own step instance); None: the config's
    #: ``runtime.step_concurrency``. A step with ``isolation = "process"`` handles one at a time.
    concurrency: ClassVar[int | None] = None
    #: At most this many handler calls a second (None: no limit), ``rate_burst`` of them at once.
    rate_limit: ClassVar[float | None] = None
    rate_burst: ClassVar[int | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.driver = kwargs.get("driver")
        self.error_map = kwargs.get("error_map")

    @classmethod
    def observed_model_names(cls) -> list[str]:
        return model_names(cls.observes)

    def fetch_pending(self, deleted: bool = False) -> list[Any]:
        """The objects to sync (or, with ``deleted=True``, to delete).

        Override to narrow the set; the default is every dirty object of the
        observed models. An override is called on every resync and change.
        """
        assert self.model_accessor is not None, "the runtime sets model_accessor"
        return list(self.model_accessor.fetch_pending(self.observed_model_names(), deleted))

    def sync_record(self, o: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement sync_record")

    def delete_record(self, o: Any) -> None:
        """Nothing to remove from the backend: log it, and the object is purged (as in the original)."""
        self.log.debug(
            "delete_record not overridden: nothing removed from the backend",
            step=type(self).__name__,
            model=getattr(o, "model_name", type(o).__name__),
            id=getattr(o, "id", None),
        )


def limit_problems(cls: Any) -> list[str]:
    """What is wrong with a sync step's ``concurrency``, ``rate_limit`` and ``rate_burst`` (one line each)."""
    problems = []
    concurrency = getattr(cls, "concurrency", None)
    if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
        problems.append(f"concurrency must be an integer >= 1 or None, got {concurrency!r}")
    rate = getattr(cls, "rate_limit", None)
    if rate is not None and (type(rate) not in (int, float) or not rate > 0):
        problems.append(f"rate_limit must be a number > 0 (objects/s) or None, got {rate!r}")
    burst = getattr(cls, "rate_burst", None)
    if burst is not None and (type(burst) is not int or burst < 1):
        problems.append(f"rate_burst must be an integer >= 1 or None, got {burst!r}")
    return problems


class Policy(StepBase):
    """Subclass it, set ``model_name``, override any of ``handle_create/update/delete``.

    ``handle_create(o)`` runs for an object never policed, ``handle_update(o)``
    after each later change, ``handle_delete(o)`` after it is deleted. Methods
    that are not overridden are skipped.
    """

    model_name: ClassVar[str | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and not hasattr(args[0], "info") and "model_accessor" not in kwargs:
            kwargs["model_accessor"] = args[0]  # the original's Policy(model_accessor)
            args = args[1:]
        super().__init__(*args, **kwargs)


class PullStep(StepBase):
    """Subclass it and override ``pull_records()``.

    It runs every ``period`` seconds (default: the config's ``runtime.pull_period``,
    5 s); a run never overlaps the previous one.
    """

    period: ClassVar[float | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observed_model = kwargs.get("observed_model")

    def pull_records(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement pull_records")
