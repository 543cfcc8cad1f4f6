"""The ``modelaccessor`` modules: the current accessor's model classes as module attributes.

``from synchronizers.new_base.modelaccessor import MyModel, model_accessor`` (and
``from ... import *``) resolve against the accessor of the innermost
``actors.compat.activated`` (PEP 562 module ``__getattr__``), so the same module
object serves every synchronizer in the process. The compat layer's state is here too, all
of it in context variables (so threads do not mix): whether it is active, and the accessor.
"""

from __future__ import annotations

import dis
import sys
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from actors.orm import ModelAccessor

#: Set by ``activated`` (only there).
ACTIVE: ContextVar[bool] = ContextVar("actors_compat_active", default=False)
ACCESSOR: ContextVar[ModelAccessor | None] = ContextVar("actors_compat_accessor", default=None)


def is_active() -> bool:
    """Whether the original framework's import paths resolve here (inside :func:`activated`)."""
    return ACTIVE.get()


def current_accessor() -> ModelAccessor | None:
    """The model accessor of the innermost :func:`activated` in this context, if any."""
    return ACCESSOR.get()


_IMPORT_FROM = dis.opmap.get("IMPORT_FROM", -1)

#: Names a modelaccessor module has besides the model classes.
_STATIC = ("ModelAccessor", "ModelLink")


class UnknownModelError(AttributeError):
    """``modelaccessor.Foo`` where the current synchronizer has no model ``Foo``."""


class UnknownModelImportError(ImportError):
    """``from ...modelaccessor import Foo`` where the current synchronizer has no model ``Foo``."""


class NoAccessorError(AttributeError):
    """A model was looked up outside ``actors.compat.activated``."""


class ModelLink:
    """The original's stand-in for ``xosbase.ModelLink`` (a model class, a ``via`` name, ``into``)."""

    def __init__(self, dest: Any, via: str, into: str | None = None) -> None:
        self.dest = dest
        self.via = via
        self.into = into


def _model_names(accessor: ModelAccessor) -> list[str]:
    return sorted(spec.name for spec in accessor.schema.concrete())


def _from_import_statement() -> bool:
    """Whether the module's ``__getattr__`` runs for ``from module import name``.

    Python turns an ``AttributeError`` there into a generic "cannot import name"
    ``ImportError``, dropping our message; an ``ImportError`` raised by
    ``__getattr__`` is passed through as is. Elsewhere (``getattr``, ``hasattr``)
    an ``AttributeError`` is the right error.
    """
    try:
        frame = sys._getframe(3)  # this function, __getattr__, the lookup helper, the importer
    except ValueError:
        return False
    code = frame.f_code.co_code
    return 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] == _IMPORT_FROM


def _lookup(module_name: str, name: str) -> Any:
    accessor = current_accessor()
    if accessor is None:
        raise NoAccessorError(
            f"{module_name}.{name}: no model accessor is active here; "
            "synchronizer code runs inside actors.compat.activated(config, accessor)"
        )
    if name == "model_accessor":
        return accessor
    if name == "__all__":
        return [*_model_names(accessor), "model_accessor", *_STATIC]
    if not name.startswith("_") and accessor.has_model_class(name):
        return accessor.get_model_class(name)
    message = f"no model named {name!r} in this synchronizer (models: {', '.join(_model_names(accessor))})"
    if _from_import_statement():
        raise UnknownModelImportError(
            f"cannot import name {name!r} from {module_name!r}: {message}", name=module_name
        )
    raise UnknownModelError(f"module {module_name!r} has no attribute {name!r}: {message}")


def module_getattr(module_name: str) -> Callable[[str], Any]:
    """The PEP 562 ``__getattr__`` of the modelaccessor module ``module_name``."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return _lookup(module_name, name)

    return __getattr__


def module_dir(module: types.ModuleType) -> Callable[[], list[str]]:
    """The PEP 562 ``__dir__``: the module's own names plus the current models."""

    def __dir__() -> list[str]:
        accessor = current_accessor()
        models = [*_model_names(accessor), "model_accessor"] if accessor is not None else []
        return sorted({*vars(module), *models})

    return __dir__
