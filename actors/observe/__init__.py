"""Seeing inside a running synchronizer: Prometheus metrics, health checks, one HTTP endpoint.

The lowest layer: it knows nothing of steps, stores or actors. Whoever runs (the
main job, ``core``, an embedded :class:`~actors.runtime.Synchronizer`) builds a
:class:`Metrics` (its own registry), a :class:`Health` with named checks, and an
:class:`ObserveServer` serving both over HTTP (``/metrics``, ``/healthz``, ``/readyz``,
plus any JSON routes it adds, such as ``/status`` and ``/why/<model>/<id>``).
"""

from ._health import Health
from ._http import HttpSettings, ObserveServer, http_settings
from ._metrics import NULL_METRICS, Metrics, NullMetrics

__all__ = [
    "NULL_METRICS",
    "Health",
    "HttpSettings",
    "Metrics",
    "NullMetrics",
    "ObserveServer",
    "http_settings",
]
