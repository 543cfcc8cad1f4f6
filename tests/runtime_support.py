"""Builders shared by the runtime tests: a small schema, a store, actor contexts."""

from __future__ import annotations

import time
from typing import Any

import pykka

from actors.models import load_schema
from actors.models._xproto import parse_xproto
from actors.orm import ModelAccessor
from actors.runtime import ChildContext, ChildState, FakeClock, RuntimeSettings
from actors.runtime.messages import IsIdle
from actors.steps import StepFactory
from actors.store import Caller, Store

MODELS = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
message Alpha (XOSBase) {
    optional string name = 1;
}
message Beta (XOSBase) {
    optional string name = 1;
    required manytoone alpha->Alpha:betas = 2;
}
message Gamma (XOSBase) {
    optional string name = 1;
    required manytoone beta->Beta:gammas = 2;
}
"""

#: Gamma depends on Beta, Beta on Alpha.
GRAPH = {"Beta": [["Alpha", "alpha", "betas"]], "Gamma": [["Beta", "beta", "gammas"]]}


def make_store(url: str = "sqlite://") -> Store:
    schema = load_schema([], extra=parse_xproto(MODELS, "test.xproto"))
    return Store(url, schema)


def client(store: Store) -> ModelAccessor:
    """An accessor writing as a client (its saves make objects dirty)."""
    return ModelAccessor(store, caller=Caller.CLIENT)


def make_ctx(
    store: Store,
    *,
    name: str = "child",
    clock: FakeClock | None = None,
    supervisor: pykka.ActorRef[Any] | None = None,
    **settings: Any,
) -> ChildContext:
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    state = ChildState(name, "test")
    return ChildContext(
        name=name,
        state=state,
        accessor=accessor,
        clock=clock or FakeClock(),
        settings=RuntimeSettings(**settings),
        supervisor=supervisor,
    )


def factory(cls: type) -> StepFactory:
    return StepFactory(cls, f"<test>/{cls.__name__}.py")


def settle(ref: pykka.ActorRef[Any], timeout: float = 10.0) -> None:
    """Wait until the actor reports idle (its queue drained)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ref.ask(IsIdle(), timeout=timeout):
            return
        time.sleep(0.002)
    raise AssertionError(f"{ref} still busy after {timeout} s")


class Recorder(pykka.ThreadingActor):
    """Keeps every message it receives; ``ask("messages")`` returns them."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "messages":
            return list(self.messages)
        self.messages.append(message)
        return None
