"""The event-step actor's status: the bus's health, the progress watchdog, the status report.

kafka-python reconnects by itself when the broker goes away mid-stream, so an
outage shows only as errors from ``poll()`` or the consumer's own probe
(``ConsumerClient.problem()``). The actor reports ``degraded`` with
``detail["bus"] = "down: ..."`` once the problem has lasted ``health_grace``
seconds of the runtime clock (a blip is not an outage), ``running`` with ``"up"``
when it ends, one log line per change.

The progress watchdog (:meth:`EventWatchdog.on_check_progress`, the stall rule
in :mod:`actors.runtime.events`) does not count an outage or a rebalance as a
stall, nor a partition waiting for its retry timer, nor one with nothing left to read.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.steps import describe

from ._child import ChildContext
from ._event_flow import EventFlow
from ._kafka_client import BusOptions, is_outage
from ._kafka_offsets import Rebalance, TopicPartition, partition_name, partition_names
from .messages import CheckProgress, Connect, Phase

__all__ = ["EventWatchdog"]


class EventWatchdog(EventFlow):
    """Reports the bus down after a grace period and up again, finds partitions (or a group join)
    that stopped moving and recovers with a new consumer, and writes the status."""

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__(ctx)
        #: Since when the current bus problem lasts (clock time; None: no problem).
        self.problem_since: float | None = None
        #: Owned partitions the watchdog found stalled, until each makes progress again.
        self.stalled: set[TopicPartition] = set()
        self.recoveries = 0
        #: When the poll loop next runs the watchdog (clock time; see :meth:`on_check_progress`).
        self.next_check = 0.0
        #: Since when the consumer has been (re)joining its group without a break (clock time).
        self.joining_since: float | None = None
        #: The watchdog found the group join stuck (kafka-python can stay "rebalancing" for ever).
        self.join_stuck = False

    # -- the bus's health -------------------------------------------------------
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
        if state.state in (Phase.STARTING, Phase.RUNNING):
            state.state = Phase.DEGRADED
        if not self.degraded:
            self.degraded = True
            self.log.warning("event bus unreachable, retrying", problem=problem)

    def _bus_up(self) -> None:
        state = self.ctx.state
        state.detail["bus"] = "up"
        if state.state in (Phase.STARTING, Phase.DEGRADED):
            state.state = Phase.RUNNING
        if self.degraded:
            self.degraded = False
            self.problem_since = None
            self.log.info("event bus reachable again")

    # -- the progress watchdog -------------------------------------------------------
    def _progressed(self, tp: TopicPartition, now: float) -> None:
        self.progress[tp] = now
        if tp in self.stalled:
            self.stalled.discard(tp)
            if not self.stalled and not self.join_stuck:
                self._unstall()

    def _stalled_names(self) -> list[str]:
        return partition_names(self.stalled) + (["(group join)"] if self.join_stuck else [])

    def _note_joining(self, joining: bool) -> None:
        """The poll loop says whether the consumer is (re)joining its group right now."""
        if joining:
            if self.joining_since is None:
                self.joining_since = self.ctx.clock.now()
            return
        self.joining_since = None
        if self.join_stuck:
            self.join_stuck = False
            if not self.stalled:
                self._unstall()

    def on_check_progress(self, _message: CheckProgress) -> None:
        """The watchdog: an owned partition with events left and no progress for ``stall_timeout``
        is stalled; the actor then reports ``stalled``, logs it once, and joins again."""
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        now = self.ctx.clock.now()
        self.next_check = now + options.stall_timeout / 4
        if self.degraded or consumer.joining():
            for tp in self.progress:  # an outage or a rebalance is not a stall...
                self.progress[tp] = now
            since = self.joining_since
            if not self.degraded and since is not None and now - since >= options.stall_timeout:
                self.join_stuck = True  # ... but a join that never ends is
                self._stall(set(), {}, options)
            return
        assigned = consumer.assignment()
        for tp in assigned:
            self.progress.setdefault(tp, now)
        if self.stalled - assigned:
            self.stalled &= assigned  # given up meanwhile: no longer this actor's to move
            if not self.stalled and not self.join_stuck:
                self._unstall()
        suspects = [
            tp
            for tp in assigned
            if now - self.progress[tp] >= options.stall_timeout
            and not (tp in self.failures and self.failures[tp].waiting)  # a retry timer will move it
        ]
        if not suspects:
            return
        try:
            ends = consumer.end_offsets(suspects, min(options.stall_timeout, 5.0))
        except Exception as exc:
            if not is_outage(exc):
                raise
            return  # the bus does not answer: the health check reports that
        lags = {tp: self._lag(tp, ends.get(tp)) for tp in suspects}
        stalled = {tp for tp, lag in lags.items() if lag}
        for tp in set(suspects) - stalled:
            self._progressed(tp, now)  # nothing left to read: idle, not stalled
        if stalled:
            self._stall(stalled, {tp: lags[tp] for tp in stalled}, options)

    def _stall(
        self, partitions: set[TopicPartition], lags: Mapping[TopicPartition, int | None], options: BusOptions
    ) -> None:
        state = self.ctx.state
        first = state.state != Phase.STALLED
        self.stalled |= partitions
        state.detail["stalled"] = self._stalled_names()
        if state.state in (Phase.STARTING, Phase.RUNNING, Phase.DEGRADED):
            state.state = Phase.STALLED
        if first and partitions:
            self.log.warning(
                "event step stalled: partitions with events left made no progress, joining again",
                partitions=partition_names(partitions),
                lag={partition_name(tp): lag for tp, lag in lags.items()},
                stall_timeout=options.stall_timeout,
            )
        elif first:
            self.log.warning(
                "event step stalled: the consumer group join does not end, joining again",
                stall_timeout=options.stall_timeout,
            )
        self.recoveries += 1
        # A new consumer starts with nothing kafka-python may have kept: it joins the group
        # and fetches every partition it gets from the committed offsets.
        self._release_consumer("a stall")
        for tp in list(self.buffers) + list(self.failures) + list(self.next_offset):
            self._drop_partition(tp)
        self.tracker.forget(list(self.tracker.unconfirmed()))
        self.rebalance = Rebalance(self.log, self.tracker)
        now = self.ctx.clock.now()
        for tp in self.stalled:
            self.progress[tp] = now
        self.joining_since = None  # the new consumer's join gets its own stall_timeout
        self.actor_ref.tell(Connect())

    def _unstall(self) -> None:
        state = self.ctx.state
        state.detail["stalled"] = []
        if state.state == Phase.STALLED:
            state.state = Phase.DEGRADED if self.degraded else Phase.RUNNING
        self.log.info("event step consuming again", recoveries=self.recoveries)

    def _update_status(self) -> None:
        """Queue depth, retries, dead letters, pauses, owned partitions, lag, progress, stalls."""
        state = self.ctx.state
        state.queue_depth = sum(len(buf) for buf in self.buffers.values())
        detail = state.detail
        detail["retrying"] = sum(1 for f in self.failures.values() if not f.dead_letter)
        detail["dead_lettered"] = self.dead_lettered
        detail["retries"] = self.retried
        detail["paused"] = len(self.paused)
        detail["partitions"] = self.rebalance.owned_names()
        consumer = self.consumer
        if consumer is None:
            return
        lag: dict[str, int | None] = {}
        now = None
        for tp in consumer.assignment():
            behind = lag[partition_name(tp)] = self._lag(tp, consumer.highwater(tp))
            if behind == 0:  # caught up: idle, not stalled
                now = self.ctx.clock.now() if now is None else now
                self._progressed(tp, now)
        detail["lag"] = lag
        detail["last_progress"] = {partition_name(tp): at for tp, at in self.progress.items()}
        detail["stalled"] = self._stalled_names()
        detail["recoveries"] = self.recoveries
