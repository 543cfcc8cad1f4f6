"""The status fields written after a sync or policy run (``actors.runtime._status``)."""

from __future__ import annotations

import json

import pytest

from actors.runtime._status import (
    BACKOFF_CAP,
    DEFERRED_RETRY,
    blocked_fields,
    error_text,
    failure_fields,
    policy_failure_fields,
    policy_success_fields,
    register_of,
    success_fields,
)
from actors.steps import DeferredException, InnocuousException

NOW = 1_000_000.0


def after(row: dict, exc: BaseException, now: float = NOW, **kw) -> tuple[dict, float]:
    fields, next_run = failure_fields(row, exc, now, **kw)
    return {**row, **fields}, next_run


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", "3"])
def test_register_of_reads_a_malformed_register_as_empty(raw):
    assert register_of({"backend_register": raw}) == {}


def test_register_of_parses_the_register():
    assert register_of({"backend_register": '{"exponent": 2}'}) == {"exponent": 2}


def test_error_text_falls_back_to_the_type_name():
    assert error_text(ValueError("boom")) == "boom"
    assert error_text(ValueError()) == "ValueError"


def test_success_fields_enact_the_later_of_updated_and_changed_by_policy():
    fields = success_fields({"updated": 5.0, "changed_by_policy": 7.0}, NOW)
    assert fields["enacted"] == 7.0
    assert (fields["backend_status"], fields["backend_code"]) == ("OK", 1)
    assert json.loads(fields["backend_register"]) == {
        "next_run": 0,
        "exponent": 0,
        "last_success": NOW,
        "failures": 0,
    }


def test_first_failure_retries_at_once_then_the_xos_backoff():
    row: dict = {}
    delays = []
    for _ in range(5):
        row, next_run = after(row, ValueError("down"))
        delays.append(next_run - NOW)
    # exponent x 600 s: the first failure at once, then 1, 2, 3, 4 x 600 s
    assert delays == [0.0, 600.0, 1200.0, 1800.0, 2400.0]
    register = register_of(row)
    assert (register["failures"], register["exponent"]) == (5, 5)
    assert row["backend_code"] == 2


def test_innocuous_failures_back_off_by_60_s_and_code_1():
    row: dict = {}
    delays = []
    for _ in range(3):
        row, next_run = after(row, InnocuousException("later"))
        delays.append(next_run - NOW)
    assert delays == [0.0, 60.0, 120.0]
    assert row["backend_code"] == 1


def test_backoff_is_capped_at_8_hours():
    row = {"backend_register": json.dumps({"failures": 100, "exponent": 100})}
    _, next_run = failure_fields(row, ValueError("down"), NOW)
    assert next_run - NOW == BACKOFF_CAP == 8 * 3600.0


def test_backoff_disabled_retries_at_once():
    row = {"backend_register": json.dumps({"failures": 3, "exponent": 3})}
    _, next_run = failure_fields(row, ValueError("down"), NOW, backoff_disabled=True)
    assert next_run == NOW


def test_deferred_is_not_an_error_keeps_the_exponent_and_code_0():
    row = {"backend_register": json.dumps({"failures": 2, "exponent": 2})}
    fields, next_run = failure_fields(row, DeferredException("waiting"), NOW)
    assert next_run == NOW + DEFERRED_RETRY
    assert fields["backend_code"] == 0
    assert register_of(fields)["exponent"] == 2 and register_of(fields)["failures"] == 3


def test_failure_keeps_the_last_two_distinct_errors():
    row: dict = {}
    row, _ = after(row, ValueError("one"))
    row, _ = after(row, ValueError("two"))
    row, _ = after(row, ValueError("two"))
    assert row["backend_status"] == "one // two"
    row, _ = after(row, ValueError("three"))
    assert row["backend_status"] == "two // three"


def test_failure_status_is_cut_at_1024_characters():
    fields, _ = failure_fields({}, ValueError("x" * 2000), NOW)
    assert len(fields["backend_status"]) == 1024


def test_blocked_fields_name_the_failed_dependency():
    fields = blocked_fields("Alpha", 3, "down")
    assert fields == {"backend_status": "Failed due to error in model Alpha id 3: down", "backend_code": 2}


def test_policy_success_fields_and_the_delete_policy_flag():
    fields = policy_success_fields({"updated": 4.0, "changed_by_step": 6.0}, needs_delete_policy=True)
    assert fields == {
        "policed": 6.0,
        "policy_status": "done",
        "policy_code": 1,
        "backend_need_delete_policy": True,
    }
    already = policy_success_fields({"updated": 4.0, "backend_need_delete_policy": True}, True)
    assert "backend_need_delete_policy" not in already
    assert "backend_need_delete_policy" not in policy_success_fields({"deleted": True}, True)


def test_policy_failure_fields_show_one_frame_of_the_raiser():
    def policy_code() -> None:
        raise ValueError("bad policy")

    try:
        policy_code()
    except ValueError as exc:
        fields = policy_failure_fields(exc)
    assert fields["policy_code"] == 2
    text = fields["policy_status"]
    assert text.startswith("Traceback (most recent call last):\n")
    assert "test_status.py" in text and "ValueError: bad policy" in text
    assert policy_failure_fields(ValueError("no traceback"))["policy_status"] == "ValueError: no traceback\n"
