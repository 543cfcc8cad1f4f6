"""The store: model objects in SQLite or PostgreSQL, bookkeeping rules, change notices."""

from ._cascade import choose_owner, owner_to_fill
from ._errors import NotFound, StoreError, StoreInUse, StoreOpenError, ValidationError, safe_url
from ._notices import ChangeNotice, Unsubscribe
from ._pending import pending_condition, row_is_pending
from ._query import OPERATORS, Caller, Condition, Pending, Query, WriteContext, parse_lookup
from ._rejections import database_rejection
from ._rows import BackendCode, Record, Row, as_dict, register_of
from ._store import Store
from ._uploads import UploadLog
from ._values import check_column, check_id, check_value

__all__ = [
    "OPERATORS",
    "BackendCode",
    "Caller",
    "ChangeNotice",
    "Condition",
    "NotFound",
    "Pending",
    "Query",
    "Record",
    "Row",
    "Store",
    "StoreError",
    "StoreInUse",
    "StoreOpenError",
    "Unsubscribe",
    "UploadLog",
    "ValidationError",
    "WriteContext",
    "as_dict",
    "check_column",
    "check_id",
    "check_value",
    "choose_owner",
    "database_rejection",
    "owner_to_fill",
    "parse_lookup",
    "pending_condition",
    "register_of",
    "row_is_pending",
    "safe_url",
]
