"""Finding step classes in a synchronizer's folders.

A synchronizer's ``steps_dir``, ``model_policies_dir``, ``pull_steps_dir`` and
``event_steps_dir`` hold plain ``.py`` files. :func:`discover` imports each one
as a fresh module under a namespace of its own (so two synchronizers with a
``steps/sync_mymodel.py`` each get their own copy) and returns the classes
derived from the matching base class. A file that fails to import becomes a
:class:`LoadError`; the other files still load.

:func:`instantiate` builds a step the way code written for the original
framework expects, whatever its ``__init__`` accepts, and :class:`StepFactory`
remembers how, so the runtime can build a fresh instance at every restart.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ._base import Policy, SyncStep

T = TypeVar("T", bound=type)

#: Set in a class's own ``__dict__`` by :func:`abstract_step`.
_ABSTRACT_MARK = "__actors_abstract_step__"

#: ``sys.path`` and the module table are process-wide: one folder is imported at a time.
_import_lock = threading.RLock()

#: Attributes every step instance ends up with (set after construction if missing or None).
_RUNTIME_ATTRIBUTES = ("model_accessor", "log", "logger")


@dataclass(frozen=True)
class LoadError:
    """A file, or a class in it, that could not be loaded.

    ``str()`` gives one line: ``path: Class: ExceptionType: message`` (no
    traceback); ``cls`` is ``None`` when the file itself failed to import.
    """

    path: str
    cls: str | None
    message: str

    def __str__(self) -> str:
        if self.cls:
            return f"{self.path}: {self.cls}: {self.message}"
        return f"{self.path}: {self.message}"


def describe(exc: BaseException) -> str:
    """``ExceptionType: message`` on one line (what a :class:`LoadError` carries; a message that
    starts with its type, as kafka-python's do, is not given it twice)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def abstract_step(cls: T) -> T:
    """Mark ``cls`` as a base for other steps: discovery never takes it as a step itself.

    Subclasses are not marked (the mark lives in the class's own ``__dict__``).
    """
    setattr(cls, _ABSTRACT_MARK, True)
    return cls


def is_abstract_step(cls: type) -> bool:
    """Whether ``cls`` was marked with :func:`abstract_step` or has abstract methods."""
    return bool(vars(cls).get(_ABSTRACT_MARK)) or inspect.isabstract(cls)


# -- constructing steps --------------------------------------------------------
def instantiate(cls: type, **kwargs: Any) -> Any:
    """Construct ``cls`` passing only the keyword arguments its ``__init__`` accepts.

    All of ``kwargs`` if it takes ``**kwargs``; only the named ones otherwise; none
    if it takes only ``self`` (``def __init__(self):`` in the reference's pull
    step). Afterwards ``model_accessor``, ``log`` and ``logger`` are set from
    ``kwargs`` on the instance if it lacks them or they are ``None``.
    """
    obj = cls(**_accepted(cls, kwargs))
    for name in _RUNTIME_ATTRIBUTES:
        value = kwargs.get(name)
        if value is None and name in ("log", "logger"):
            value = kwargs.get("logger" if name == "log" else "log")
        if value is not None and getattr(obj, name, None) is None:
            setattr(obj, name, value)
    return obj


def _accepted(cls: type, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to read: pass everything
        return dict(kwargs)
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(kwargs)
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in kwargs.items() if k in named}


@dataclass(frozen=True)
class StepFactory:
    """How to build one discovered step class: ``make()`` returns a fresh instance.

    ``path`` is the file the class was found in; ``kwargs`` are handed to
    :func:`instantiate` (typically ``model_accessor`` and ``log``). The runtime
    calls :meth:`make` again each time it restarts the step's actor.
    """

    cls: type
    path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        """The class name (``"SyncMyModel"``)."""
        return self.cls.__name__

    def make(self) -> Any:
        """A new instance of :attr:`cls` (see :func:`instantiate`)."""
        return instantiate(self.cls, **self.kwargs)

    def __repr__(self) -> str:
        return f"StepFactory({self.cls.__module__}.{self.cls.__qualname__}, path={self.path!r})"


# -- importing a folder -------------------------------------------------------
def _candidate_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix == ".py" and p.is_file() and not p.name.startswith(("test", "_"))
    )


def _ensure_packages(namespace: str) -> None:
    """Put an empty package in ``sys.modules`` for ``namespace`` and each of its parents.

    So that ``pickle`` and ``importlib.import_module`` can reach ``<namespace>.<stem>``.
    """
    parts = namespace.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            package = types.ModuleType(name, f"Modules a synchronizer loaded ({name}).")
            package.__path__ = []
            package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            sys.modules[name] = package
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], package)


def _check_namespace(namespace: str) -> None:
    if not namespace or not all(part.isidentifier() for part in namespace.split(".")):
        raise ValueError(f"namespace must be a dotted Python name, got {namespace!r}")


@dataclass
class _Session:
    """The state of the outermost :func:`import_session` (guarded by ``_import_lock``)."""

    before: set[str]
    #: ``sys.path`` when the session began.
    path_before: list[Any] = field(default_factory=list)
    #: The folders this session put on ``sys.path`` (not those that were there already).
    folders: list[Path] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)

    def restore_path(self) -> None:
        """Take the session's folders off ``sys.path``: its own entries and those the service added.

        Services put their folder on ``sys.path`` themselves (``sys.path.append(...)``
        at the top of a step file); left there, that folder would be "already on the
        path" to the next session, and what it holds would shadow the next
        synchronizer's modules of the same name. Entries that were there before the
        session stay where they were.
        """
        kept = Counter(p for p in self.path_before if isinstance(p, str))
        ours = set(self.folders)
        path: list[Any] = []
        for entry in sys.path:
            if isinstance(entry, str) and kept[entry] > 0:
                kept[entry] -= 1
            elif isinstance(entry, str) and _resolved(entry) in ours:
                continue
            path.append(entry)
        sys.path[:] = path

    def drops(self, name: str, module: types.ModuleType | None) -> bool:
        """Whether ``name`` is a plain-name module found through one of this session's folders."""
        if any(name == ns or name.startswith(ns + ".") for ns in self.namespaces):
            return False
        file = getattr(module, "__file__", None)
        if not file:
            return False
        try:
            path = Path(file).resolve()
        except (OSError, ValueError):
            return False
        parts = name.split(".")
        for folder in self.folders:
            base = folder.joinpath(*parts)
            if path in (base.with_name(base.name + ".py"), base / "__init__.py"):
                return True
        return False


_session: _Session | None = None


@contextlib.contextmanager
def import_session(folders: Iterable[str | os.PathLike[str]] = ()) -> Iterator[None]:
    """Make ``folders`` importable by plain name (``from helpers import x``) inside the block.

    The folders go to the front of ``sys.path``, in the order given (a folder
    already on ``sys.path`` stays where it is and is left alone). Sessions
    nest (one thread at a time: the block holds the import lock): a module a
    step imports by plain name is imported once for the outermost session and
    shared by every file imported in it. When the outermost session ends, its
    folders leave ``sys.path`` (with the entries for them that the files added
    themselves, ``sys.path.append(<own folder>)`` as services do) and those
    plain-name modules leave ``sys.modules`` (the files that imported them keep
    them), so another
    synchronizer's ``helpers`` is not mistaken for this one's (only modules
    found through the session's own folders are dropped: a library a step
    imports for the first time stays). Files imported
    by :func:`import_folder` / :func:`import_file` stay, under their namespace.
    """
    global _session
    with _import_lock:
        outer = _session is None
        if outer:
            importlib.invalidate_caches()
            _session = _Session(before=set(sys.modules), path_before=list(sys.path))
        session = _session
        assert session is not None
        on_path = {_resolved(p) for p in sys.path if isinstance(p, str)}
        for folder in folders:
            resolved = Path(folder).resolve()
            if resolved in on_path:  # importable already (the working folder...): not ours to clean up
                continue
            sys.path.insert(len(session.folders), os.fspath(resolved))
            session.folders.append(resolved)
            on_path.add(resolved)
        try:
            yield
        finally:
            if outer:
                _session = None
                session.restore_path()
                for name in set(sys.modules) - session.before:
                    if session.drops(name, sys.modules.get(name)):
                        del sys.modules[name]


def _register_namespace(namespace: str) -> None:
    _check_namespace(namespace)
    _ensure_packages(namespace)
    if _session is not None:
        _session.namespaces.add(namespace)


def import_file(file: str | os.PathLike[str], *, namespace: str) -> types.ModuleType:
    """Import one ``.py`` file as ``<namespace>.<stem>``, its folder importable (see :func:`import_session`).

    Raises what the file raises.
    """
    path = Path(file)
    with import_session([path.parent]):
        _register_namespace(namespace)
        return _import_file(f"{namespace}.{path.stem}", path)


def import_folder(
    folder: str | os.PathLike[str], *, namespace: str
) -> tuple[list[tuple[Path, types.ModuleType]], list[LoadError]]:
    """Import every ``*.py`` file of ``folder`` as the module ``<namespace>.<stem>``.

    Not recursive; files whose name starts with ``test`` or ``_`` are skipped;
    files are imported in name order. The folder is on ``sys.path`` while its
    files are imported (with any other folders of an enclosing
    :func:`import_session`), so they may import each other and helper modules
    (``from helpers import x``); such helper modules are dropped from
    ``sys.modules`` when the session ends, so another synchronizer's
    ``helpers`` is not mistaken for this one's. The discovered modules stay in
    ``sys.modules`` under their namespaced names (see :func:`unload_namespace`).

    Returns the ``(file, module)`` pairs that imported and a :class:`LoadError`
    for each file that raised.
    """
    _check_namespace(namespace)
    where = Path(folder)
    try:
        files = _candidate_files(where)
    except OSError as exc:
        return [], [LoadError(os.fspath(folder), None, describe(exc))]
    loaded: list[tuple[Path, types.ModuleType]] = []
    errors: list[LoadError] = []
    with import_session([where]):
        _register_namespace(namespace)
        for file in files:
            try:
                module = _import_file(f"{namespace}.{file.stem}", file)
            except (Exception, SystemExit) as exc:
                errors.append(LoadError(os.fspath(file), None, describe(exc)))
            else:
                loaded.append((file, module))
    return loaded, errors


def _resolved(entry: str) -> Path:
    """A ``sys.path`` entry as an absolute folder (``""`` is the working folder)."""
    try:
        return Path(entry or os.curdir).resolve()
    except (OSError, ValueError, RuntimeError):
        return Path(entry)


def _import_file(module_name: str, file: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}", path=os.fspath(file))
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        raise
    parent, _, stem = module_name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], stem, module)
    return module


def unload_namespace(namespace: str) -> None:
    """Drop ``namespace`` and every module under it from ``sys.modules``.

    Classes already handed out keep working; only the module table forgets them.
    """
    prefix = namespace + "."
    for name in [n for n in sys.modules if n == namespace or n.startswith(prefix)]:
        sys.modules.pop(name, None)


# -- finding classes -------------------------------------------------------------
def _wanted(cls: type, base: type) -> bool:
    if cls is base or not issubclass(cls, base) or is_abstract_step(cls):
        return False
    if issubclass(base, SyncStep):
        observes = getattr(cls, "observes", None)
        return observes is not None and observes != [] and observes != ()
    if issubclass(base, Policy):
        # As the original: a policy without model_name is a base for other policies.
        return bool(getattr(cls, "model_name", None))
    return True


def _class_key(cls: type) -> tuple[str, str] | int:
    """Identity of a class across module copies: its defining file and qualified name."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return id(cls)
    try:
        return (os.path.realpath(file), cls.__qualname__)
    except (OSError, ValueError):
        return id(cls)


def _classes(
    modules: Iterable[tuple[Path, types.ModuleType]], base: type, namespace: str
) -> list[tuple[type, Path]]:
    found: list[tuple[type, Path]] = []
    index: dict[tuple[str, str] | int, int] = {}
    for file, module in modules:
        for value in list(vars(module).values()):
            if not isinstance(value, type) or not _wanted(value, base):
                continue
            key = _class_key(value)
            if key not in index:
                index[key] = len(found)
                found.append((value, file))
                continue
            # The same class twice (a sibling imported by plain name too): prefer our copy.
            i = index[key]
            if not found[i][0].__module__.startswith(namespace + ".") and value.__module__.startswith(
                namespace + "."
            ):
                found[i] = (value, file)
    return found


def discover(
    folder: str | os.PathLike[str], base: type, *, namespace: str
) -> tuple[list[type], list[LoadError]]:
    """The classes derived from ``base`` in the ``*.py`` files of ``folder``.

    Each file is imported as ``<namespace>.<stem>`` (see :func:`import_folder`).
    Every class defined or imported in a file that is a strict subclass of
    ``base`` is taken, except abstract ones (:func:`abstract_step`, abstract
    methods); for :class:`SyncStep` only classes with ``observes`` set, for
    :class:`Policy` only classes with ``model_name`` set. A class is taken once,
    in file order. Returns the classes and a :class:`LoadError` per file that
    failed to import.
    """
    modules, errors = import_folder(folder, namespace=namespace)
    return [cls for cls, _ in _classes(modules, base, namespace)], errors


def discover_factories(
    folder: str | os.PathLike[str],
    base: type,
    *,
    namespace: str,
    kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[StepFactory], list[LoadError]]:
    """Like :func:`discover`, as :class:`StepFactory` values carrying their file and ``kwargs``."""
    modules, errors = import_folder(folder, namespace=namespace)
    factories = [
        StepFactory(cls, os.fspath(file), dict(kwargs or {}))
        for cls, file in _classes(modules, base, namespace)
    ]
    return factories, errors
