"""Model policies: post-save hooks for the objects of one model."""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import StepBase

__all__ = ["Policy"]


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
