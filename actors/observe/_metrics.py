"""The synchronizer's Prometheus metrics, in a registry of its own.

Names follow controller-runtime's (``step`` where it says ``controller``), prefixed
``actors_``. Counters and histograms are moved by one call from the actors
(:meth:`Metrics.reconciled` ...); gauges that describe a state (queue depth, step
up, objects by state, consumer lag) are read at scrape time from the snapshot
functions given to :meth:`Metrics.set_sources`, so the hot path pays nothing for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["NULL_METRICS", "ChildView", "Metrics", "NullMetrics"]

_log = logging.getLogger("actors.observe")

#: Seconds: from a millisecond handler to a slow remote call.
TIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds from ``updated`` to ``enacted``: a sync at once, after retries, after hours of backoff.
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0, 8 * 3600.0)
#: Child states counted as up by ``actors_step_up``.
UP_STATES = frozenset({"running", "degraded", "stalled"})
#: Child kinds whose queue is a work queue (``actors_workqueue_depth``).
QUEUE_KINDS = frozenset({"sync", "policy", "event"})


class ChildView(Protocol):
    """What the scrape-time collector reads of one child (the runtime's ``ChildStatus``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def detail(self) -> dict[str, Any]: ...


ChildrenSource = Callable[[], Iterable[ChildView]]
#: ``{(model, state): count}``, state one of enacted, pending, error, deferred.
ObjectsSource = Callable[[], Mapping[tuple[str, str], int]]


class NullMetrics:
    """Metrics that record nothing: the runtime's default when no endpoint is served."""

    enabled = False

    def reconciled(
        self, step: str, result: str, started: float | None = None, lag: float | None = None
    ) -> None:
        """Count one handler run of ``step`` (``result`` success, error or deferred)."""

    def queued(self, step: str, since: float) -> None:
        """An object of ``step`` left its work queue; it entered at ``since`` (``time.monotonic``)."""

    def restarted(self, step: str, reason: str) -> None:
        """The supervisor restarts ``step`` (``reason`` crash or deadline)."""

    def events(self, step: str, result: str, count: int = 1) -> None:
        """``count`` events handled by event step ``step`` (``result`` success or error)."""

    def dead_letter(self, step: str) -> None:
        """Event step ``step`` sent an event to its dead-letter topic."""

    def grpc_calls(self, service: str, method: str) -> Callable[[str, float], None]:
        """What records the calls of one gRPC method: ``record(code, started)`` as each ends.

        ``code`` is the call's status code name, ``started`` its ``time.monotonic()`` at the
        start. The label lookups are done here, once per method, not on each call.
        """
        return _record_nothing


def _record_nothing(code: str, started: float) -> None:
    """The recorder of :class:`NullMetrics`: nothing is counted."""


NULL_METRICS = NullMetrics()


class Metrics(NullMetrics):
    """The metrics of one synchronizer (or one ``core``), in :attr:`registry`.

    Each instance has its own :class:`~prometheus_client.CollectorRegistry`, so
    several synchronizers embedded side by side never collide; it holds the
    process's own collectors too (``process_*``, ``python_info``, ``python_gc_*``).
    """

    enabled = True

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, labels: str) -> Counter:
            return Counter(name, doc, labels.split(), registry=r)

        def histogram(
            name: str, doc: str, labels: str, buckets: tuple[float, ...] = TIME_BUCKETS
        ) -> Histogram:
            return Histogram(name, doc, labels.split(), buckets=buckets, registry=r)

        self._reconcile_total = counter(
            "actors_reconcile", "Handler runs of each step, by result.", "step result"
        )
        self._reconcile_errors = counter(
            "actors_reconcile_errors", "Handler runs of each step that raised.", "step"
        )
        self._reconcile_time = histogram("actors_reconcile_time_seconds", "Time of one handler run.", "step")
        self._queue_duration = histogram(
            "actors_workqueue_queue_duration_seconds",
            "How long an object waits in a step's work queue before it is looked at.",
            "step",
        )
        self._sync_lag = histogram(
            "actors_sync_lag_seconds",
            "From an object's updated to its enacted, at each successful sync.",
            "step",
            LAG_BUCKETS,
        )
        self._restarts = counter(
            "actors_supervisor_restarts", "Restarts of a child by the supervisor.", "step reason"
        )
        self._events = counter("actors_events", "Events handled by event steps.", "step result")
        self._dead_letters = counter("actors_dead_letters", "Events sent to the dead-letter topic.", "step")
        self._grpc_handled = counter(
            "actors_grpc_server_handled",
            "gRPC API calls completed, by method and status code.",
            "grpc_service grpc_method grpc_code",
        )
        self._grpc_time = histogram(
            "actors_grpc_server_handling_seconds", "Time of one gRPC API call.", "grpc_service grpc_method"
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:
            GCCollector(registry=r)
        self._snapshot = _SnapshotCollector()
        r.register(self._snapshot)
        # Label children by key: a dict lookup instead of prometheus-client's checks on each call.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def set_sources(
        self, children: ChildrenSource | None = None, objects: ObjectsSource | None = None
    ) -> None:
        """The snapshot functions read at scrape time (``None``: that part is not reported)."""
        self._snapshot.children = children
        self._snapshot.objects = objects

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children[key] = metric.labels(*labels)
        return child

    def reconciled(
        self, step: str, result: str, started: float | None = None, lag: float | None = None
    ) -> None:
        self._child(self._reconcile_total, step, result).inc()
        if result == "error":
            self._child(self._reconcile_errors, step).inc()
        if started is not None:
            self._child(self._reconcile_time, step).observe(time.monotonic() - started)
        if lag is not None:
            self._child(self._sync_lag, step).observe(max(0.0, lag))

    def queued(self, step: str, since: float) -> None:
        self._child(self._queue_duration, step).observe(max(0.0, time.monotonic() - since))

    def restarted(self, step: str, reason: str) -> None:
        self._child(self._restarts, step, reason).inc()

    def events(self, step: str, result: str, count: int = 1) -> None:
        if count:
            self._child(self._events, step, result).inc(count)

    def dead_letter(self, step: str) -> None:
        self._child(self._dead_letters, step).inc()

    def grpc_calls(self, service: str, method: str) -> Callable[[str, float], None]:
        timer = self._child(self._grpc_time, service, method)
        handled: dict[str, Any] = {}  # status code -> its counter child

        def record(code: str, started: float) -> None:
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = self._child(self._grpc_handled, service, method, code)
            counter.inc()
            timer.observe(time.monotonic() - started)

        return record


class _SnapshotCollector:
    """Gauges read at scrape time from the runtime's snapshot functions."""

    def __init__(self) -> None:
        self.children: ChildrenSource | None = None
        self.objects: ObjectsSource | None = None

    def describe(self) -> list[Metric]:
        return []  # not known before the first scrape; keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        children = self.children
        if children is not None:
            try:
                yield from _child_gauges(list(children()))
            except Exception as exc:  # a scrape must not fail because the runtime is stopping
                _log.debug("status not collected: %s", exc)
        objects = self.objects
        if objects is not None:
            try:
                counts = objects()
            except Exception as exc:
                _log.debug("object counts not collected: %s", exc)
            else:
                family = GaugeMetricFamily(
                    "actors_objects", "Objects observed by sync steps, by state.", labels=["model", "state"]
                )
                for (model, state), count in sorted(counts.items()):
                    family.add_metric([model, state], count)
                yield family


def _child_gauges(children: list[ChildView]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "actors_workqueue_depth", "Objects or events waiting in a step.", labels=["step"]
    )
    up = GaugeMetricFamily("actors_step_up", "1 while the step runs, 0 while it is down.", labels=["step"])
    lag = GaugeMetricFamily(
        "actors_event_consumer_lag",
        "Events of a partition not yet handled by the event step.",
        labels=["step", "topic", "partition"],
    )
    for child in children:
        if child.kind == "changefeed":
            continue
        up.add_metric([child.name], 1.0 if child.state in UP_STATES else 0.0)
        if child.kind in QUEUE_KINDS:
            depth.add_metric([child.name], child.queue_depth)
        for name, behind in (child.detail.get("lag") or {}).items():
            topic, _, partition = str(name).rstrip("]").rpartition("[")
            if behind is not None:
                lag.add_metric([child.name, topic, partition], behind)
    return iter((depth, up, lag))
