"""Random bytes and random values at every method: the server answers, the data stays intact."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.api import ApiServer
from actors.api._auth import LoginThrottle
from actors.api._protos import CORE_SERVICE, MODEL_METHODS
from actors.store import OPERATORS, Store, check_value

from .support import RawClient, Result, basic

# A query SQLAlchemy deprecates today fails tomorrow: treat the warning as the failure.
pytestmark = pytest.mark.filterwarnings("error::sqlalchemy.exc.SADeprecationWarning")

#: What a request may get back; INTERNAL or UNKNOWN would be a server bug.
EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # a Watch that was (validly) asked to wait
}

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture
def seeded(api_server: ApiServer, api_store: Store) -> dict[int, dict[str, Any]]:
    """Services written before the fuzzing; only readers touch them, so they must not change."""
    rows = {}
    for i in range(5):
        row = api_store.create("Service", {"name": f"svc-{i}", "description": f"seed {i}"})
        rows[row["id"]] = api_store.get("Service", row["id"])
    return rows


def call_any(raw: RawClient, path: str, data: bytes, metadata: Any, streaming: bool) -> Result:
    if not streaming:
        return raw.call(path, data, metadata, timeout=10)
    call = raw.stream(path, data, metadata, timeout=0.2)
    try:
        for _ in call:
            pass
        return Result(grpc.StatusCode.OK, b"", "", "")
    except grpc.RpcError as exc:
        return Result(exc.code(), b"", exc.details() or "", "")  # type: ignore[attr-defined]


def all_methods(api_server: ApiServer) -> list[tuple[str, bool, str]]:
    """(path, streaming, model or '') of every method the server offers."""
    core = api_server.protos.pool.FindServiceByName(CORE_SERVICE).methods
    out = [(f"/actors.api.v1.Core/{m.name}", m.server_streaming, "") for m in core]
    for model in api_server.protos.models:
        for name, spec in MODEL_METHODS.items():
            out.append((f"/actors.services.v1.{model}/{name}", spec[2], model))
    return out


def check_intact(api_server: ApiServer, api_store: Store, seeded: dict[int, dict[str, Any]]) -> None:
    channel = grpc.insecure_channel(api_server.address)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    raw = RawClient(channel)
    protos = api_server.protos
    for id, row in seeded.items():
        assert api_store.get("Service", id) == row
    # Every stored Widget is valid and can be served.
    schema = api_store.schema
    fields = {f.column: f for f in schema.fields("Widget").values()}
    for row in api_store.select("Widget"):
        for column, value in row.items():
            if column != "id":
                check_value("Widget", fields[column], value)
        got = raw.call(
            "/actors.services.v1.Widget/Get", protos.message("GetRequest")(id=row["id"]), basic("reader")
        )
        assert got.code == grpc.StatusCode.OK, got.details
    listed = raw.call(
        "/actors.services.v1.Widget/List",
        protos.message("ListRequest")(include_deleted=True),
        basic("reader"),
    )
    assert listed.code == grpc.StatusCode.OK
    channel.close()


def test_random_bytes_at_every_method(
    api_server: ApiServer, api_store: Store, raw: RawClient, seeded: dict[int, dict[str, Any]]
) -> None:
    methods = all_methods(api_server)

    @FUZZ
    @given(
        index=st.integers(min_value=0, max_value=len(methods) - 1),
        data=st.one_of(st.binary(max_size=2048), st.binary(max_size=16)),
        who=st.sampled_from(["reader", "sync", "nobody"]),
    )
    def fuzz(index: int, data: bytes, who: str) -> None:
        path, streaming, model = methods[index]
        if model == "Service" and who == "sync":
            who = "reader"  # the seeded model is only read, so it must stay as it was
        metadata = basic("reader", "wrong") if who == "nobody" else basic(who)
        api_server.auth.throttle = LoginThrottle()  # wrong passwords here are not guesses to throttle
        result = call_any(raw, path, data, metadata, streaming)
        assert result.code in EXPECTED, (path, data, result)

    fuzz()
    check_intact(api_server, api_store, seeded)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
)


def test_random_field_values(
    api_server: ApiServer, api_store: Store, raw: RawClient, seeded: dict[int, dict[str, Any]]
) -> None:
    protos = api_server.protos
    widget = protos.models["Widget"]
    columns = sorted(widget.columns - {"id"})

    @FUZZ
    @given(
        values=st.dictionaries(st.sampled_from(columns), _values, max_size=6),
        nulls=st.lists(st.sampled_from([*columns, "id", "nope"]), max_size=2),
        update_id=st.one_of(st.none(), st.integers(min_value=-3, max_value=40)),
        caller=st.sampled_from(["", "client", "synchronizer", "step", "policy", "bogus"]),
    )
    def fuzz(values: dict[str, Any], nulls: list[str], update_id: int | None, caller: str) -> None:
        msg = widget.message()
        sent = {}
        for column, value in values.items():
            try:
                setattr(msg, column, value)
                sent[column] = getattr(msg, column)
            except (TypeError, ValueError, OverflowError):
                pass  # a value the message type cannot hold: not sent
        method = "Create"
        if update_id is not None:
            msg.id = update_id
            method = "Update"
        request = widget.write(
            object=msg, null_fields=nulls, options=protos.message("WriteOptions")(caller=caller)
        )
        result = raw.call(f"/actors.services.v1.Widget/{method}", request, basic("sync"))
        assert result.code in EXPECTED, (method, values, result)
        if result.code == grpc.StatusCode.OK and method == "Create":
            created = widget.message.FromString(result.data)
            stored = api_store.get("Widget", created.id)
            for column, value in sent.items():
                if column in nulls or column in (
                    "created",
                    "updated",
                    "leaf_model_name",
                    "changed_by_step",
                    "changed_by_policy",
                ):
                    continue
                assert stored[column] == value, (column, value, stored[column])

    fuzz()
    check_intact(api_server, api_store, seeded)


def test_random_filters(
    api_server: ApiServer, api_store: Store, raw: RawClient, seeded: dict[int, dict[str, Any]]
) -> None:
    protos = api_server.protos
    for i in range(3):
        api_store.create("Widget", {"name": f"w{i}", "size": i})
    columns = sorted(protos.models["Widget"].columns)
    value_cls = protos.message("Value")

    def value_msg(value: Any) -> Any:
        from actors.api._wire import value_to_message

        try:
            return value_to_message(value_cls, value)
        except TypeError:
            return value_cls(string_value=repr(value))

    condition = st.tuples(
        st.one_of(st.sampled_from(columns), st.text(max_size=10)),
        st.one_of(st.sampled_from(sorted(OPERATORS)), st.text(max_size=6)),
        st.one_of(_values, st.lists(_values, max_size=4)),
    )

    @FUZZ
    @given(
        where=st.lists(condition, max_size=3),
        exclude=st.lists(condition, max_size=2),
        order_by=st.lists(st.one_of(st.sampled_from(columns), st.text(max_size=8)), max_size=2),
        limit=st.one_of(st.none(), st.integers(min_value=-2, max_value=2**40)),
        offset=st.integers(min_value=-2, max_value=2**40),
        pending=st.sampled_from(["", "", "sync", "policy", "sync_deleted", "policy_deleted", "x"]),
        method=st.sampled_from(["Filter", "Count"]),
        model=st.sampled_from(["Widget", "Service", "SpecialWidget"]),
    )
    def fuzz(where, exclude, order_by, limit, offset, pending, method, model) -> None:  # type: ignore[no-untyped-def]
        condition_cls = protos.message("Condition")
        request = protos.message("FilterRequest")(
            where=[condition_cls(field=f, op=o, value=value_msg(v)) for f, o, v in where],
            exclude=[condition_cls(field=f, op=o, value=value_msg(v)) for f, o, v in exclude],
            order_by=order_by,
            offset=offset,
            pending=pending,
        )
        if limit is not None:
            request.limit = limit
        result = raw.call(f"/actors.services.v1.{model}/{method}", request, basic("reader"))
        assert result.code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, (request, result)

    fuzz()
    check_intact(api_server, api_store, seeded)
