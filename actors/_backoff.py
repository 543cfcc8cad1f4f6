"""One capped exponential backoff, used wherever the framework waits to try again.

The supervisor's restarts, the event actor's reconnects and event retries, the gRPC
client's reconnects and the sync status's XOS backoff all take their delays from a
:class:`Backoff`, so each reads as its numbers, not as arithmetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delays that grow by ``factor`` per attempt from ``initial`` up to ``maximum``.

    ``delay(1)`` is ``initial``, ``delay(2)`` is ``initial * factor`` and so on, never
    more than ``maximum``. With ``jitter`` (a fraction from 0 to 1) each delay is
    spread uniformly over ``delay * (1 - jitter/2)`` .. ``delay * (1 + jitter/2)`` so
    that many waiters do not retry in step.
    """

    initial: float
    """The first delay, in seconds."""
    maximum: float
    """The cap, in seconds: no delay is longer."""
    factor: float = 2.0
    """How much each delay grows over the one before."""
    jitter: float = 0.0
    """Spread of each delay as a fraction of it (0 is none, 1 is 50 % either way)."""

    def delay(self, attempt: int) -> float:
        """The wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        if attempt <= 0:
            return 0.0
        base = min(self.initial * self.factor ** min(attempt - 1, 64), self.maximum)
        if self.jitter:
            base *= 1.0 + self.jitter * (random.random() - 0.5)
        return base

    def after(self, previous: float) -> float:
        """The delay that follows ``previous`` (for loops that keep the last delay)."""
        if previous <= 0:
            return min(self.initial, self.maximum)
        return min(max(self.initial, previous * self.factor), self.maximum)
