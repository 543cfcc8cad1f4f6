"""Queue keys ``(root model, id)``: each model's root remembered, and learnt again for a new schema."""

from __future__ import annotations

from actors.models import load_schema, parse_xproto
from actors.orm import ModelAccessor
from actors.runtime._deps import Keys
from actors.store import Caller, Store

CHAIN = """
message MyInstance (ServiceInstance) {
    optional string flavor = 1;
}
"""
MORE = (
    CHAIN
    + """
message SubInstance (MyInstance) {
    optional int32 level = 1;
}
"""
)


def test_keys_name_the_root_model_and_follow_a_schema_change() -> None:
    store = Store("sqlite://", load_schema([], extra=parse_xproto(CHAIN, "keys.xproto")))
    try:
        keys = Keys(ModelAccessor(store, caller=Caller.SYNCHRONIZER))
        assert keys.key("MyInstance", 7) == ("ServiceInstance", 7)
        assert keys.key("ServiceInstance", 7) == ("ServiceInstance", 7)
        assert keys.key("Service", 3) == ("Service", 3)
        store.set_schema(load_schema([], extra=parse_xproto(MORE, "keys.xproto")))
        assert keys.key("SubInstance", 9) == ("ServiceInstance", 9)  # a model of the new schema
    finally:
        store.close()
