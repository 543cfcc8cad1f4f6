"""Embedding: build a synchronizer from a config, start, inspect and stop its supervisor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any, cast

import pykka

from actors.compat import Loaded, activated, load_synchronizer
from actors.config import Config
from actors.logs import configure_logging, get_logger
from actors.models import load_schema
from actors.observe import NULL_METRICS, Health, NullMetrics, ObserveServer
from actors.orm import ModelAccessor
from actors.steps import LoadError
from actors.store import Caller, Store

from ._inspect import status_tree, why
from ._isolation import CrashRecords, StepIsolation, report_previous_crashes
from ._observe import build_observe
from ._settings import RuntimeSettings
from ._supervisor import ChildSpec, Supervisor
from .clock import Clock, RealClock
from .messages import ChildStatus, GetStatus, IsIdle, Shutdown
from .policy import PolicyActor
from .pull import PullStepActor
from .sync import SyncStepActor

#: How long the synchronizer's backlog, as the API's writes see it, is reused (seconds).
BACKLOG_REFRESH = 0.02

__all__ = ["Synchronizer"]

log = get_logger("actors.runtime")


class Synchronizer:
    """One synchronizer: its store (or remote core), model accessor, loaded steps and supervisor.

    >>> sync = Synchronizer(load_config("config.yaml")).start()
    >>> sync.wait_idle()
    >>> sync.status()["SyncMyModel"].done
    >>> sync.stop()

    Several may run side by side in one process, each with its own config,
    store and model classes. ``clock`` replaces real time (tests pass a
    :class:`~actors.runtime.clock.FakeClock`); ``accessor`` replaces the store
    built from the config (the caller then owns its backend). ``serve_api``
    also serves the model API over gRPC (``api.*`` keys) on the local store.

    Logging: the framework's events go to the process's standard library logging
    as the host set it up; :meth:`start` applies the config's ``logging`` to the
    whole process only with ``configure_logging=True`` (as the main job does). A
    process that has configured no logging at all gets the default (readable lines
    on stderr, INFO) at :meth:`start`.

    The store it builds is the file's one owner (see ``Store(exclusive=True)``): on
    a SQLite file another synchronizer or core already owns, :meth:`start` raises
    :class:`~actors.store.StoreInUse`; a store that cannot be opened raises
    :class:`~actors.store.StoreOpenError`; a remote core that does not answer within
    ``accessor.connect_timeout`` raises :class:`~actors.api.Unavailable`; a busy API
    port raises ``OSError``. All are one-line messages, raised before any step runs.

    HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``, ``/status``, ``/why``):
    ``http=None`` (embedded, the default) serves it only when the config has an
    ``http`` section; ``http=True`` (the main job) serves it unless ``http.enabled``
    is false; ``http=False`` never. Its metrics are recorded only while it is served.
    The health checks (:attr:`health`) exist in every case; the gRPC health service
    of ``serve_api`` reports their readiness.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        accessor: ModelAccessor | None = None,
        serve_api: bool = False,
        configure_logging: bool = False,
        http: bool | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or RealClock()
        self.settings = RuntimeSettings.from_config(config)
        self._accessor = accessor
        self._owns_backend = accessor is None
        self._serve_api = serve_api
        self._configure_logging = configure_logging
        self.store: Store | None = None
        self.api: Any = None
        self.load_errors: list[LoadError] = []
        self._loaded: Loaded | None = None
        self.supervisor: pykka.ActorRef[Supervisor] | None = None
        self.isolation: StepIsolation | None = None
        self._http = http
        #: The metrics the actors record into (nothing recorded while no endpoint is served).
        self.metrics: NullMetrics = NULL_METRICS
        #: The named liveness and readiness checks (``healthz``, ``readyz``).
        self.health = Health()
        #: The HTTP endpoint, while served.
        self.http: ObserveServer | None = None
        self._backlog_lock = threading.Lock()
        self._backlog_seen = (0, -BACKLOG_REFRESH)  # (objects, when read)

    # -- building -------------------------------------------------------------
    @property
    def model_accessor(self) -> ModelAccessor:
        """The accessor the steps use (its classes carry the convenience wrappers)."""
        if self._accessor is None:
            self._accessor = self._build_accessor()
        return self._accessor

    def _build_accessor(self) -> ModelAccessor:
        settings = self.config.settings
        accessor, models_dir = settings.accessor, settings.models_dir
        if accessor.kind == "grpcapi" and accessor.endpoint is not None:
            from actors.api import RemoteBackend

            backend = RemoteBackend(
                accessor.endpoint,
                username=accessor.username,
                password=accessor.password,
                token=accessor.token,
                tls_ca=accessor.tls_ca,
                connect_timeout=accessor.connect_timeout,
            )
            if models_dir:
                backend.upload_models(models_dir)
            return ModelAccessor(backend, caller=Caller.SYNCHRONIZER)
        schema = load_schema([models_dir] if models_dir else [])
        # resolved by the config; exclusive: one synchronizer or core per SQLite file
        self.store = Store(str(settings.store.url), schema, exclusive=True)
        return ModelAccessor(self.store, caller=Caller.SYNCHRONIZER)

    def user_context(self) -> AbstractContextManager[Any]:
        """The context step code runs in: compat import paths, this config, this accessor."""
        return activated(self.config, self.model_accessor)

    def child_specs(self) -> list[ChildSpec]:
        """Load the steps and describe one child per step (plus one policy actor)."""
        accessor = self.model_accessor
        loaded = load_synchronizer(self.config, accessor)
        if self._loaded is not None:
            self._loaded.unload()
        self._loaded = loaded
        self.load_errors = list(loaded.errors)
        for error in self.load_errors:
            log.error("step not loaded", step=error.cls, path=error.path, error=error.message)
        specs: list[ChildSpec] = []
        for factory in loaded.sync_steps:
            specs.append(
                ChildSpec(
                    factory.name,
                    SyncStepActor,
                    (factory,),
                    interests=SyncStepActor.interests(factory, accessor, self.settings),
                    deadline=getattr(factory.cls, "deadline", None),
                    detail={"path": factory.path, "observes": getattr(factory.cls, "observed_model_names")()},  # noqa: B009
                )
            )
        if loaded.policies:
            specs.append(
                ChildSpec(
                    "policies",
                    PolicyActor,
                    (list(loaded.policies),),
                    interests=PolicyActor.interests(list(loaded.policies)),
                    detail={"policies": [f.name for f in loaded.policies]},
                )
            )
        for factory in loaded.pull_steps:
            specs.append(
                ChildSpec(
                    factory.name,
                    PullStepActor,
                    (factory,),
                    deadline=getattr(factory.cls, "deadline", None),
                    detail={"path": factory.path},
                )
            )
        if loaded.event_steps:
            from .events import EventStepActor

            for factory in loaded.event_steps:
                specs.append(
                    ChildSpec(factory.name, EventStepActor, (factory,), detail={"path": factory.path})
                )
        names = [s.name for s in specs]
        for spec_name in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"two steps are named {spec_name}: step class names must be unique")
        return specs

    # -- life -----------------------------------------------------------------
    def start(self) -> Synchronizer:
        """Load models and steps, start the supervisor (and the API server when configured).

        The API port is bound before the supervisor starts: a busy port stops the
        start before any step has written anything.
        """
        if self._configure_logging:
            configure_logging(self.config.settings.logging)
        # Served on the store of this process (accessor.kind local).
        serve_local = self._serve_api and self._owns_backend and self.config.settings.accessor.kind == "local"
        if serve_local and self.store is None:
            from actors.api import check_address

            check_address(self.config.settings.api.address)  # before the store is opened
        if self.http is None:
            self.metrics, self.health, self.http = build_observe(self, self._http)  # binds its port
        specs = self.child_specs()
        if serve_local and self.store is not None and self.api is None:
            self.api = _api_server(self.store, self.config, self.metrics, backlog=self._backlog)
            self.api.set_readiness(lambda: self.health.ok("readyz"))
            self.api.set_inspection(
                lambda: asdict(status_tree(self)), lambda model, id: asdict(why(self, model, id))
            )
        records = CrashRecords.open(self.config.settings.data_dir, self.settings.name)
        if records is not None:
            report_previous_crashes(records)
        self.isolation = StepIsolation(self.config, self.settings.isolation, records)
        self.supervisor = Supervisor.start(
            specs,
            accessor=self.model_accessor,
            clock=self.clock,
            settings=self.settings,
            user_context=self.user_context,
            isolation=self.isolation,
            metrics=self.metrics,
        )
        if self.api is not None:
            self.api.start()
        if self.http is not None:
            self.http.start()
            log.info("HTTP endpoint serving", address=self.http.address, url=f"{self.http.url}/metrics")
        log.info(
            "synchronizer started",
            name=self.settings.name,
            children=[s.name for s in specs],
            load_errors=len(self.load_errors),
        )
        return self

    def status(self) -> dict[str, ChildStatus]:
        """The state of every child: running, restarting, failed; counts; last error; queue depth."""
        if self.supervisor is None:
            return {}
        return cast(dict[str, ChildStatus], self.supervisor.ask(GetStatus(), timeout=10))

    def _backlog(self) -> int:
        """Objects the sync steps have ready to sync (read at most every ``BACKLOG_REFRESH`` s).

        The API holds its writes back while this is at ``api.backlog_limit`` or above.
        """
        with self._backlog_lock:
            count, when = self._backlog_seen
            now = time.monotonic()
            if now - when < BACKLOG_REFRESH:
                return count
            try:
                count = sum(s.queued for s in self.status().values() if s.kind == SyncStepActor.kind)
            except (pykka.Timeout, pykka.ActorDeadError):
                count = 0  # stopping or restarting: hold nothing back
            self._backlog_seen = (count, now)
            return count

    def wait_idle(self, timeout: float = 10.0, *, settle: int = 2) -> bool:
        """Wait until no child has queued or running work (``settle`` times in a row).

        For tests and scripts; returns ``False`` if still busy after ``timeout`` seconds.
        """
        assert self.supervisor is not None, "start() first"
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            if self.supervisor.ask(IsIdle(), timeout=max(0.1, deadline - time.monotonic())):
                streak += 1
                if streak >= settle:
                    return True
            else:
                streak = 0
            time.sleep(0.005)
        return False

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: no new work, running handlers finish (bounded), then the store closes."""
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.http is not None:
            self.http.stop()
            self.http = None
            self.metrics = NULL_METRICS
        if self.supervisor is not None:
            try:
                self.supervisor.ask(Shutdown(timeout), timeout=timeout + 5)
                self.supervisor.stop(timeout=timeout + 5)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
            self.supervisor = None
        if self.isolation is not None and self.isolation.records is not None:
            self.isolation.records.close()
        self.isolation = None
        if self._loaded is not None:
            self._loaded.unload()
            self._loaded = None
        if self._owns_backend and self._accessor is not None:
            close: Callable[[], None] | None = getattr(self._accessor.backend, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Synchronizer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _api_server(
    store: Store,
    config: Config,
    metrics: NullMetrics = NULL_METRICS,
    backlog: Callable[[], int] | None = None,
) -> Any:
    """The API server over ``store``, its port bound, not started yet; its writes wait for ``backlog``."""
    from actors.api import ApiServer

    api = config.settings.api
    return ApiServer(
        store,
        address=api.address,
        users=api.users,
        tls=dict(api.tls) if api.tls is not None else None,
        max_message_bytes=api.max_message_bytes,
        max_concurrent_calls=api.max_concurrent_calls,
        backlog=backlog,
        backlog_limit=api.backlog_limit,
        backlog_wait=api.backlog_wait,
        sync_share=api.sync_share,
        anonymous_read=api.anonymous_read,
        metrics=metrics,
    )
