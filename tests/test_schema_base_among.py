"""``Schema.base_among``: the one test of "this model, or one derived from it"."""

from __future__ import annotations

from actors.models import load_schema, parse_xproto


def test_base_among_names_the_first_model_that_is_or_is_a_base() -> None:
    schema = load_schema(
        extra=parse_xproto(
            "message Gadget (XOSBase) { optional string a = 1; }\n"
            "message FancyGadget (Gadget) { optional string b = 1; }"
        )
    )
    assert schema.base_among("FancyGadget", ["Gadget"]) == "Gadget"
    assert schema.base_among("FancyGadget", ["FancyGadget", "Gadget"]) == "FancyGadget"
    assert schema.base_among("FancyGadget", ["XOSBase"]) == "XOSBase"
    assert schema.base_among("Gadget", ["FancyGadget"]) is None  # a base is not one of its derived models
    assert schema.base_among("Gadget", []) is None
    # Names the schema lacks match only themselves, and never raise.
    assert schema.base_among("Gone", ["Gadget"]) is None
    assert schema.base_among("Gone", ["Gone"]) == "Gone"
    assert schema.base_among("Gadget", ["Gone", "Gadget"]) == "Gadget"
