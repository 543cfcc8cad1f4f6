"""The event-step actor's view of the bus: up, or down for longer than ``health_grace``.

kafka-python reconnects by itself when the broker goes away mid-stream, so an
outage shows only as errors from ``poll()`` or the consumer's own probe
(``ConsumerClient.problem()``). :class:`EventHealth` turns those into the
actor's state: ``degraded`` with ``detail["bus"] = "down: ..."`` once the
problem has lasted ``health_grace`` seconds of the runtime clock (a blip is not
an outage), ``running`` with ``"up"`` when it ends, one log line per change.
"""

from __future__ import annotations

from ._event_flow import EventFlow
from ._event_values import describe

__all__ = ["EventHealth"]


class EventHealth(EventFlow):
    """Reports the bus down after a grace period and up again, logging once per change."""

    #: Since when the current problem lasts (clock time; None: no problem).
    problem_since: float | None = None

    def _check_health(self, error: BaseException | None) -> None:
        """After a poll: ``error`` is what it raised (an outage), else the consumer's probe decides."""
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        problem = describe(error) if error is not None else consumer.problem()
        if problem is None:
            self.problem_since = None
            if self.degraded:
                self._bus_up()
            return
        now = self.ctx.clock.now()
        if self.problem_since is None:
            self.problem_since = now
        if not self.degraded and now - self.problem_since >= options.health_grace:
            self._bus_down(f"{problem} (at {','.join(options.servers)})")

    def _bus_down(self, problem: str, next_attempt: float | None = None) -> None:
        state = self.ctx.state
        text = problem if next_attempt is None else f"{problem}; next attempt in {next_attempt:g} s"
        state.detail["bus"] = f"down: {text}"
        if state.state in ("starting", "running"):
            state.state = "degraded"
        if not self.degraded:
            self.degraded = True
            self.log.warning("event bus unreachable, retrying", problem=problem)

    def _bus_up(self) -> None:
        state = self.ctx.state
        state.detail["bus"] = "up"
        if state.state in ("starting", "degraded"):
            state.state = "running"
        if self.degraded:
            self.degraded = False
            self.problem_since = None
            self.log.info("event bus reachable again")
