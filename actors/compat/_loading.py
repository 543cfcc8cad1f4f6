"""``load_synchronizer``: import a synchronizer's convenience modules and find its steps."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.config import Config
from actors.logs import create_logger
from actors.orm import ModelAccessor
from actors.steps import (
    EventStep,
    LoadError,
    Policy,
    PullStep,
    StepFactory,
    SyncStep,
    describe,
    discover_factories,
    import_folder,
    import_session,
    limit_problems,
    model_names,
    unload_namespace,
    validate_event_step,
)

from ._activate import activated
from ._custom_python import load_models_py
from ._modelaccessor import _model_names

__all__ = ["Loaded", "load_synchronizer"]

_counter = itertools.count(1)
_counter_lock = threading.Lock()

#: (config key, base class, Loaded attribute) in loading order.
_KINDS: tuple[tuple[str, type, str], ...] = (
    ("steps_dir", SyncStep, "sync_steps"),
    ("model_policies_dir", Policy, "policies"),
    ("pull_steps_dir", PullStep, "pull_steps"),
    ("event_steps_dir", EventStep, "event_steps"),
)


@dataclass
class Loaded:
    """What :func:`load_synchronizer` found: a factory per step class, and the errors.

    Run the steps' code inside :meth:`activated` (construction included), so the
    original's import paths and ``Config`` keep resolving to this synchronizer.
    """

    sync_steps: list[StepFactory] = field(default_factory=list)
    policies: list[StepFactory] = field(default_factory=list)
    pull_steps: list[StepFactory] = field(default_factory=list)
    event_steps: list[StepFactory] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    #: The models that gained a class from ``<models_dir>/models.py`` (``custom_python``).
    custom_python: list[str] = field(default_factory=list)
    #: The namespace the files were imported under: ``<namespace>.steps.sync_mymodel``,
    #: ``<namespace>.convenience.*``, ``<namespace>.models.models``, ``.model_policies.*``,
    #: ``.pull_steps.*``, ``.event_steps.*``.
    namespace: str = ""
    config: Config | None = None
    accessor: ModelAccessor | None = None

    @property
    def factories(self) -> list[StepFactory]:
        """Every factory: sync steps, policies, pull steps, event steps."""
        return [*self.sync_steps, *self.policies, *self.pull_steps, *self.event_steps]

    def activated(self) -> AbstractContextManager[ModelAccessor]:
        """``actors.compat.activated(config, accessor)`` for this synchronizer."""
        if self.config is None or self.accessor is None:
            raise RuntimeError("this Loaded has no config and accessor")
        return activated(self.config, self.accessor)

    def unload(self) -> None:
        """Drop this synchronizer's modules from ``sys.modules`` (the classes keep working)."""
        if self.namespace:
            unload_namespace(self.namespace)


def _next_namespace() -> str:
    with _counter_lock:
        return f"actors_user_{next(_counter)}"


def _folder(config: Config, key: str) -> Path | None:
    value = getattr(config.settings, key)
    if not value:
        return None
    return Path(config.base_dir, os.fspath(value))


def _import_folders(config: Config) -> list[Path]:
    """The folders synchronizer code may import from by plain name, in lookup order."""
    folders = [f for key in (*(k for k, _, _ in _KINDS), "models_dir") if (f := _folder(config, key))]
    folders.append(config.path.parent if config.path is not None else Path(config.base_dir))
    return [f for f in folders if f.is_dir()]


def load_synchronizer(config: Config, accessor: ModelAccessor, *, namespace: str | None = None) -> Loaded:
    """Import the synchronizer described by ``config``, bound to ``accessor``.

    Inside :func:`~actors.compat.activated`, with the synchronizer's folders
    importable by plain name (``steps_dir``, ``pull_steps_dir``,
    ``event_steps_dir``, ``model_policies_dir``, ``models_dir`` and the config
    file's folder, so any step may ``from helpers import x``; see
    :func:`~actors.steps.import_session`): imports ``<models_dir>/models.py``
    (its classes join their models, see :func:`load_models_py`), then
    ``<models_dir>/convenience/*.py`` (their ``register_convenience_wrapper``
    calls register into ``accessor.wrappers``), then discovers ``steps_dir`` (:class:`SyncStep`),
    ``model_policies_dir`` (:class:`Policy`), ``pull_steps_dir`` (:class:`PullStep`)
    and ``event_steps_dir`` (:class:`EventStep`), each if configured. Each class
    found is checked (the models it names exist; an event step's ``technology``,
    ``topics``/``pattern``) and built once with :meth:`StepFactory.make`; a class
    that fails either becomes a :class:`LoadError` naming file, class and message,
    and the others still load. Files are imported as modules under ``namespace``
    (default: a new ``actors_user_<n>`` per call), so two synchronizers in one
    process each get their own copies, bound to their own accessor.
    """
    ns = namespace or _next_namespace()
    loaded = Loaded(namespace=ns, config=config, accessor=accessor)
    with activated(config, accessor), import_session(_import_folders(config)):
        models_dir = _folder(config, "models_dir")
        if models_dir is not None and (models_dir / "models.py").is_file():
            models, errors = load_models_py(models_dir / "models.py", accessor, namespace=f"{ns}.models")
            loaded.custom_python.extend(models)
            loaded.errors.extend(errors)
        if models_dir is not None and (models_dir / "convenience").is_dir():
            _, errors = import_folder(models_dir / "convenience", namespace=f"{ns}.convenience")
            loaded.errors.extend(errors)
        log = create_logger(None, name=config.name)
        for key, base, attr in _KINDS:
            folder = _folder(config, key)
            if folder is None:
                continue
            factories, errors = discover_factories(folder, base, namespace=f"{ns}.{key.removesuffix('_dir')}")
            loaded.errors.extend(errors)
            found: list[StepFactory] = getattr(loaded, attr)
            for factory in factories:
                kwargs = {"model_accessor": accessor, "log": log.bind(step=factory.name)}
                factory = dataclasses.replace(factory, kwargs=kwargs)
                problem = _check(factory, accessor)
                if problem is not None:
                    loaded.errors.append(LoadError(factory.path, factory.name, problem))
                else:
                    found.append(factory)
    return loaded


def _check(factory: StepFactory, accessor: ModelAccessor) -> str | None:
    """Why ``factory`` cannot run, or ``None``; builds one instance to find out."""
    cls: Any = factory.cls
    try:
        for problem in _problems(cls, accessor):
            return problem
        policy = issubclass(cls, Policy) and accessor.has_model_class(cls.model_name)
        if policy and getattr(cls, "model", None) is None:
            cls.model = accessor.get_model_class(cls.model_name)  # as the original's policy engine
        factory.make()
    except Exception as exc:
        return describe(exc)
    return None


def _unknown(names: list[str], accessor: ModelAccessor) -> Iterator[str]:
    for name in names:
        if name not in accessor.schema:
            yield f"no model named {name!r} (models: {', '.join(_model_names(accessor))})"


def _problems(cls: Any, accessor: ModelAccessor) -> Iterator[str]:
    isolation = getattr(cls, "isolation", None)
    if isolation not in (None, "thread", "process"):
        yield f"isolation must be 'thread' or 'process', got {isolation!r}"
    elif isolation == "process" and issubclass(cls, EventStep):
        yield "isolation = 'process' is not supported for event steps (they always run in a thread)"
    if issubclass(cls, SyncStep):
        yield from limit_problems(cls)
        for problem in _unknown(model_names(cls.observes), accessor):
            yield f"observes: {problem}"
    elif issubclass(cls, Policy):
        for problem in _unknown([cls.model_name], accessor):
            yield f"model_name: {problem}"
    elif issubclass(cls, EventStep):
        invalid = validate_event_step(cls)
        if invalid:
            yield invalid
