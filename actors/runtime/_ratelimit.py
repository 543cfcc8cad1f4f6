"""A token bucket on the runtime's clock: how many handler calls a step may start, and when."""

from __future__ import annotations

from .clock import Clock

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per handler call.

    The bucket starts full. Time is the injectable clock's, so tests drive it with
    :class:`~actors.runtime.clock.FakeClock`.
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError(f"rate_limit must be > 0 objects/s, got {rate!r}")
        if burst < 1:
            raise ValueError(f"rate_burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock.now()

    def take(self) -> float:
        """Take a token: ``0.0`` when one was taken, else the seconds until one is due (none taken)."""
        now = self.clock.now()
        if now > self.at:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
