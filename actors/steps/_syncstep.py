"""Sync steps: map objects of the models they observe onto a backend."""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import StepBase, model_names

__all__ = ["SyncStep", "limit_problems"]


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
