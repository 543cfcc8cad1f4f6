"""Pull steps: called on a timer to bring the environment's state into models."""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import StepBase

__all__ = ["PullStep"]


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
