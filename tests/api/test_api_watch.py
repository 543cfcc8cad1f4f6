"""The watch stream: replay from a sequence number, live notices, resume after a server restart."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from actors.api import ApiServer, RemoteBackend
from actors.api import _watch as watch_module
from actors.models import Schema
from actors.store import Caller, ChangeNotice, Store, WriteContext

from ..helpers import wait_for
from .support import PASSWORDS


def connect(address: str, user: str = "sync", **options: Any) -> RemoteBackend:
    options.setdefault("timeout", 20.0)
    return RemoteBackend(address, username=user, password=PASSWORDS[user], **options)


def seqs(notices: list[ChangeNotice]) -> list[int]:
    return [n.seq for n in notices]


def test_watch_resumes_after_a_server_restart_without_missing_a_notice(
    api_store: Store, api_schema: Schema, db_url: str, start_server: Callable[..., ApiServer]
) -> None:
    server = start_server(api_store)
    port = server.port
    backend = connect(server.address, "reader")
    writer = connect(server.address, "sync")
    try:
        seen: list[ChangeNotice] = []
        backend.subscribe(seen.append)
        for i in range(3):
            writer.create("Widget", {"name": f"before-{i}"}, WriteContext(Caller.CLIENT))
        wait_for(lambda: len(seen) == 3, description="the first three notices")

        server.stop(grace=0)
        # The core is away: writes to its database go on (another core process, say).
        for i in range(3):
            api_store.create("Widget", {"name": f"while-down-{i}"})
        # A client write waits for the core to come back instead of failing.
        result: dict[str, Any] = {}
        pending_write = threading.Thread(
            target=lambda: result.update(row=writer.create("Service", {"name": "waited"}, WriteContext()))
        )
        pending_write.start()

        # A new core process: a new store over the same file, the same port.
        store2 = Store(db_url, api_schema)
        try:
            start_server(store2, address=f"127.0.0.1:{port}")
            pending_write.join(20)
            assert result["row"]["name"] == "waited"
            # One write the new server only finds in the journal (not published to it)...
            api_store.create("Widget", {"name": "journal-only"})
            # ...and one published to it: the watch fills the gap in order.
            store2.create("Widget", {"name": "after"})
            last = store2.last_seq()
            wait_for(lambda: seen and seen[-1].seq == last, timeout=20, description=f"notice {last}")
            assert seqs(seen) == list(range(1, last + 1))  # every seq once, in order
            assert [n.kind for n in seen] == ["create"] * last
            # Reads work again through the same backend.
            assert backend.get("Service", result["row"]["id"])["name"] == "waited"
        finally:
            store2.close()
    finally:
        backend.close()
        writer.close()


def test_watch_replays_from_a_sequence_number(raw: Any, api_server: ApiServer, api_store: Store) -> None:
    from .support import basic

    for i in range(5):
        api_store.create("Widget", {"name": f"w{i}"})
    protos = api_server.protos
    call = raw.stream(
        "/actors.api.v1.Core/Watch", protos.message("WatchRequest")(since_seq=2), basic("reader")
    )
    notice_cls = protos.message("ChangeNotice")
    got = [notice_cls.FromString(next(call)).seq for _ in range(3)]
    assert got == [3, 4, 5]
    api_store.create("Widget", {"name": "live"})
    assert notice_cls.FromString(next(call)).seq == 6
    call.cancel()


def test_watch_filters_by_models_and_their_derived_models(
    raw: Any, api_server: ApiServer, api_store: Store
) -> None:
    from .support import basic

    protos = api_server.protos
    api_store.create("Service", {"name": "s"})
    api_store.create("SpecialWidget", {"name": "sw"})
    api_store.create("Widget", {"name": "w"})
    request = protos.message("WatchRequest")(since_seq=0, models=["Widget"])
    call = raw.stream("/actors.api.v1.Core/Watch", request, basic("reader"))
    notice_cls = protos.message("ChangeNotice")
    got = [notice_cls.FromString(next(call)) for _ in range(2)]
    assert [(n.seq, n.model) for n in got] == [(2, "SpecialWidget"), (3, "Widget")]
    call.cancel()


class FakeContext:
    """Enough of a ``grpc.ServicerContext`` to drive the watch generator directly."""

    def __init__(self) -> None:
        self.active = True
        self.callbacks: list[Callable[[], None]] = []

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def cancel(self) -> None:
        self.active = False
        for callback in self.callbacks:
            callback()


def test_a_slow_watcher_falls_back_to_the_journal(
    api_server: ApiServer, api_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "WATCH_QUEUE_LIMIT", 5)
    service = api_server.service
    protos = service.protos
    notice_cls = protos.message("ChangeNotice")
    api_store.create("Widget", {"name": "first"})
    context = FakeContext()
    stream = service.watches.stream(protos, 0, [], context)  # type: ignore[arg-type]
    assert notice_cls.FromString(next(stream)).seq == 1  # subscribed and replayed
    for i in range(40):  # far more than the queue holds while nobody reads
        api_store.create("Widget", {"name": f"w{i}"})
    got = [notice_cls.FromString(next(stream)).seq for _ in range(40)]
    assert got == list(range(2, 42))
    api_store.create("Widget", {"name": "later"})
    assert notice_cls.FromString(next(stream)).seq == 42
    context.cancel()
    assert list(stream) == []


def test_out_of_order_publication_is_delivered_in_order(
    api_server: ApiServer, api_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = api_server.service
    protos = service.protos
    notice_cls = protos.message("ChangeNotice")
    api_store.create("Widget", {"name": "zero"})
    context = FakeContext()
    stream = service.watches.stream(protos, 0, [], context)  # type: ignore[arg-type]
    assert notice_cls.FromString(next(stream)).seq == 1
    # Two writes commit; the second one's notice reaches the watcher first.
    publish = api_store._notifier.publish
    held: list[ChangeNotice] = []
    monkeypatch.setattr(api_store._notifier, "publish", held.extend)
    api_store.create("Widget", {"name": "a"})
    api_store.create("Widget", {"name": "b"})
    monkeypatch.undo()
    publish([held[1]])
    publish([held[0]])
    api_store.create("Widget", {"name": "c"})
    got = [notice_cls.FromString(next(stream)).seq for _ in range(3)]
    assert got == [2, 3, 4]
    context.cancel()
    assert list(stream) == []


def test_unsubscribe_stops_the_watch_thread(api_server: ApiServer, api_store: Store) -> None:
    backend = connect(api_server.address, "reader")
    try:
        seen: list[ChangeNotice] = []
        unsubscribe = backend.subscribe(seen.append)
        api_store.create("Widget", {"name": "one"})
        wait_for(lambda: len(seen) == 1)
        unsubscribe()
        watchers = [t for t in threading.enumerate() if t.name.startswith("actors-watch")]
        assert not any(t.is_alive() for t in watchers)
        api_store.create("Widget", {"name": "two"})
        assert len(seen) == 1
    finally:
        backend.close()


def test_watch_needs_credentials(api_server: ApiServer, raw: Any) -> None:
    import grpc

    protos = api_server.protos
    call = raw.stream("/actors.api.v1.Core/Watch", protos.message("WatchRequest")())
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
