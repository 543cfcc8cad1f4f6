"""The pull-step actor: one per ``PullStep``, each with its own ticker.

A tick runs ``pull_records()``; the next tick is scheduled only when the run is
over, ``period`` seconds after the run started (at once if the run took longer),
so runs never overlap and a slow pull step delays only itself.
"""

from __future__ import annotations

from actors.logs import traceback_if_debug
from actors.steps import PullStep, StepFactory
from actors.store import Caller

from ._child import ChildActor, ChildContext, StepExit
from ._status import error_text
from .messages import Tick

__all__ = ["PullStepActor"]


class PullStepActor(ChildActor):
    kind = "pull"

    def __init__(self, ctx: ChildContext, factory: StepFactory) -> None:
        super().__init__(ctx)
        self.factory = factory
        self.step: PullStep | None = None
        self.handlers[Tick] = self.on_tick

    @property
    def period(self) -> float:
        period = getattr(self.factory.cls, "period", None)
        return float(period) if period else self.ctx.settings.pull_period

    def on_start(self) -> None:
        super().on_start()
        self.actor_ref.tell(Tick())

    def on_tick(self, _message: Tick) -> None:
        clock = self.ctx.clock
        started = clock.now()
        try:
            if self.step is None:
                self.step = self.make_step(self.factory)
            self.call_user(self.step.pull_records, caller=Caller.SYNCHRONIZER, deadline=self.step.deadline)
            self.ctx.state.done += 1
        except StepExit:
            raise
        except Exception as exc:
            self.ctx.state.failed += 1
            self.ctx.state.detail["last_pull_error"] = error_text(exc)
            self.log.warning("pull failed", error=error_text(exc), exc_info=traceback_if_debug(self.log, exc))
        finally:
            self.schedule("tick", max(0.0, started + self.period - clock.now()), Tick())
