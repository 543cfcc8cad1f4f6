"""A service's ``models/models.py``: the model methods XOS merges into models with ``custom_python``.

The file is written for the XOS core (Django)::

    from xos.exceptions import XOSValidationError
    from models_decl import VOLTService_decl, ONUDevice_decl

    class VOLTService(VOLTService_decl):
        class Meta:
            proxy = True

        def has_access_device(self, serial_number): ...

        def save(self, *args, **kwargs):
            ...validate...
            super(VOLTService, self).save(*args, **kwargs)

Here ``models_decl`` answers ``<Model>_decl`` (and ``<Model>``) with a class
bound to the synchronizer's accessor, whose ``objects``, ``deleted_objects``
and ``DoesNotExist`` are those of the model; :func:`load_models_py` imports the
file and adds each class deriving from one of them to its model (see
``WrapperRegistry.register_model_class``), so its methods and its ``save`` /
``delete`` overrides work on the ORM's objects of that model and of models
derived from it.
"""

from __future__ import annotations

import types
import weakref
from pathlib import Path
from typing import Any

from actors.orm import ModelAccessor, ORMWrapper
from actors.steps import LoadError, describe, import_file

from ._modelaccessor import current_accessor

__all__ = ["decl_class", "load_models_py", "models_decl_getattr"]

#: Accessor -> model name -> its ``_decl`` class.
_decls: weakref.WeakKeyDictionary[ModelAccessor, dict[str, type[ORMWrapper]]] = weakref.WeakKeyDictionary()

#: The attribute a ``_decl`` class carries: the model it stands for.
DECL_MODEL = "_actors_decl_model"


class _ModelAttribute:
    """``Decl.objects`` (and the like): the attribute of the model's current class."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        cls = owner if owner is not None else type(obj)
        accessor: ModelAccessor = cls._actors_accessor  # type: ignore[attr-defined]
        return getattr(accessor.get_model_class(getattr(cls, DECL_MODEL)), self.name)


def decl_class(accessor: ModelAccessor, model: str) -> type[ORMWrapper]:
    """The ``<model>_decl`` class of ``accessor`` (one per accessor and model)."""
    by_name = _decls.setdefault(accessor, {})
    cls = by_name.get(model)
    if cls is None:
        cls = type(
            f"{model}_decl",
            (ORMWrapper,),
            {
                "__module__": "models_decl",
                "__doc__": f"The generated part of {model}: subclass it in models.py.",
                DECL_MODEL: model,
                "_actors_accessor": accessor,
                "objects": _ModelAttribute("objects"),
                "deleted_objects": _ModelAttribute("deleted_objects"),
                "DoesNotExist": _ModelAttribute("DoesNotExist"),
            },
        )
        by_name[model] = cls
    return cls


def models_decl_getattr(name: str) -> Any:
    """The PEP 562 ``__getattr__`` of the module ``models_decl``."""
    if name.startswith("__"):
        raise AttributeError(f"module 'models_decl' has no attribute {name!r}")
    accessor = current_accessor()
    if accessor is None:
        raise AttributeError(
            f"models_decl.{name}: no synchronizer is active (only inside actors.compat.activated)"
        )
    model = name.removesuffix("_decl")
    if not accessor.has_model_class(model):
        raise ImportError(f"cannot import name {name!r} from 'models_decl': no model named {model!r}")
    return decl_class(accessor, model)


def _model_of(cls: type) -> str | None:
    """The model of the nearest ``_decl`` base of ``cls`` (None if it has none)."""
    for base in cls.__mro__[1:]:
        model = vars(base).get(DECL_MODEL)
        if model is not None:
            return str(model)
    return None


def load_models_py(
    file: Path, accessor: ModelAccessor, *, namespace: str
) -> tuple[list[str], list[LoadError]]:
    """Import ``file`` (inside ``activated``) and add its classes to their models.

    Returns the names of the models that gained a class, and a :class:`LoadError`
    if the file failed to import or a class cannot be added.
    """
    try:
        module: types.ModuleType = import_file(file, namespace=namespace)
    except (Exception, SystemExit) as exc:
        return [], [LoadError(str(file), None, describe(exc))]
    models: list[str] = []
    errors: list[LoadError] = []
    for value in list(vars(module).values()):
        if not isinstance(value, type) or DECL_MODEL in vars(value) or value.__module__ != module.__name__:
            continue
        model = _model_of(value)
        if model is None:
            continue
        try:
            accessor.wrappers.register_model_class(model, value)
        except TypeError as exc:
            errors.append(LoadError(str(file), value.__name__, f"TypeError: {exc}"))
        else:
            models.append(model)
    return models, errors
