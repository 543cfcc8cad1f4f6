"""The ORM: ``Model.objects.filter(...)``, ``obj.save()``, convenience wrappers, over a backend seam."""

from . import convenience
from ._accessor import ModelAccessor
from ._backend import Backend
from ._object import DoesNotExist, ORMWrapper, acting_as, current_caller, row_of
from ._queryset import Manager, QuerySet
from ._wrappers import WrapperRegistry, register_convenience_wrapper, registering_into

__all__ = [
    "Backend",
    "DoesNotExist",
    "Manager",
    "ModelAccessor",
    "ORMWrapper",
    "QuerySet",
    "WrapperRegistry",
    "acting_as",
    "convenience",
    "current_caller",
    "register_convenience_wrapper",
    "registering_into",
    "row_of",
]
