"""The turns of API calls: a bound on concurrent handlers, writes held back by the synchronizer's backlog."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.api import ApiServer, RemoteBackend
from actors.api._gate import MAX_PAUSE, CallGate
from actors.config import ConfigError, load_config
from actors.orm import ModelAccessor
from actors.store import Caller, Store
from tests.helpers import wait_for


class _Steps:
    """Backlogs read one after another (the last one repeats), counting the reads."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def test_a_write_waits_until_the_backlog_falls_below_the_limit() -> None:
    backlog = _Steps(5, 5, 4, 2)
    gate = CallGate(backlog=backlog, backlog_limit=3, max_wait=60)
    with gate.turn(write=True):
        pass
    assert backlog.reads == 4  # 5, 5, 4 hold it; 2 lets it through
    assert gate.held == 1


def test_a_write_waits_at_most_max_wait() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.25
        return now[0]

    gate = CallGate(backlog=lambda: 100, backlog_limit=3, max_wait=1.0, clock=clock)
    assert gate.hold_write() == pytest.approx(1.0, abs=0.26)
    assert gate.held == 1


@pytest.mark.parametrize("limit, backlog", [(0, 10_000), (3, 2)])
def test_no_wait_without_a_limit_or_below_it(limit: int, backlog: int) -> None:
    gate = CallGate(
        backlog=lambda: backlog, backlog_limit=limit, clock=lambda: 1 / 0
    )  # the clock is never read
    assert gate.hold_write() == 0.0
    assert gate.held == 0


def test_a_read_is_never_held_back() -> None:
    backlog = _Steps(10)
    gate = CallGate(backlog=backlog, backlog_limit=1)
    with gate.turn(write=False):
        pass
    assert backlog.reads == 0


class _Time:
    """A fake monotonic clock; ``pause`` records each wait and moves the clock on by it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def _call(gate: CallGate, time: _Time, runs: float, write: bool = False) -> None:
    """One call through ``gate`` whose handler runs ``runs`` seconds."""
    with gate.turn(write=write):
        time.now += runs


@pytest.mark.parametrize("share, expected", [(0.5, 0.010), (0.75, 0.030), (0.2, 0.0025)])
def test_a_call_leaves_the_synchronizer_its_share_while_it_has_work(share: float, expected: float) -> None:
    time = _Time()
    gate = CallGate(
        1, backlog=lambda: 5, sync_share=share, clock=time.clock, cpu=time.clock, pause=time.pause
    )
    _call(gate, time, 0.010)
    assert time.pauses == []  # the first call runs at once
    _call(gate, time, 0.010, write=True)
    _call(gate, time, 0.010)
    assert time.pauses == [pytest.approx(expected), pytest.approx(expected)]
    assert (gate.yielded, gate.yielded_seconds) == (2, pytest.approx(2 * expected))


def test_a_call_owes_the_cpu_time_it_used_not_the_time_it_waited() -> None:
    """A call that waited 100 ms (for the write lock, the interpreter) and ran 1 ms owes 1 ms (share 0.5)."""
    time = _Time()
    cpu = [0.0]
    gate = CallGate(backlog=lambda: 5, sync_share=0.5, clock=time.clock, cpu=lambda: cpu[0], pause=time.pause)
    with gate.turn(write=True):
        time.now += 0.100
        cpu[0] += 0.001
    _call(gate, time, 0.010)
    assert time.pauses == [pytest.approx(0.001)]


def test_no_wait_for_the_share_once_the_time_has_passed_or_without_work() -> None:
    time = _Time()
    backlog = [5]
    gate = CallGate(
        backlog=lambda: backlog[0], sync_share=0.5, clock=time.clock, cpu=time.clock, pause=time.pause
    )
    _call(gate, time, 0.010)
    time.now += 0.010  # the synchronizer's share went by while no call came
    _call(gate, time, 0.010)
    backlog[0] = 0  # nothing to sync: calls run back to back
    _call(gate, time, 0.010)
    assert time.pauses == []
    assert gate.yielded == 0


def test_the_wait_for_the_share_is_bounded() -> None:
    time = _Time()
    gate = CallGate(backlog=lambda: 5, sync_share=0.9, clock=time.clock, cpu=time.clock, pause=time.pause)
    _call(gate, time, 30.0)  # a long call (an upload, a big List)
    _call(gate, time, 0.001)
    assert time.pauses == [MAX_PAUSE]


def test_without_a_share_the_backlog_is_not_read_for_the_share() -> None:
    time = _Time()
    backlog = _Steps(5)
    gate = CallGate(backlog=backlog, sync_share=0.0, clock=time.clock, cpu=time.clock, pause=time.pause)
    _call(gate, time, 0.010)
    _call(gate, time, 0.010)
    assert (backlog.reads, time.pauses) == (0, [])


def test_without_a_bound_or_a_backlog_a_turn_reads_no_clock() -> None:
    """``core``'s gate: nothing to wait for, so a call's turn costs nothing (no clock, no CPU time read)."""
    gate = CallGate(sync_share=0.5, clock=lambda: 1 / 0, cpu=lambda: 1 / 0)
    for write in (False, True):
        with gate.turn(write=write):
            pass
    assert (gate.held, gate.yielded) == (0, 0)


def test_a_call_that_fails_gives_its_slot_back() -> None:
    time = _Time()
    gate = CallGate(1, backlog=lambda: 0, clock=time.clock, cpu=time.clock, pause=time.pause)
    with pytest.raises(RuntimeError), gate.turn(write=True):
        raise RuntimeError("the handler failed")
    acquired = threading.Event()

    def other() -> None:
        with gate.turn():
            acquired.set()

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t.join(10)
    assert acquired.is_set()  # the slot was free again


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="sync_share"):
        CallGate(sync_share=share)


class _Blocking:
    """Store creates that wait for ``release`` and record how many ran at once."""

    def __init__(self, store: Store) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.create = store.create
        store.create = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(30)
            return self.create(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def clients(remote: Callable[..., RemoteBackend]) -> Iterator[Callable[[ApiServer], ModelAccessor]]:
    def connect(server: ApiServer) -> ModelAccessor:
        return ModelAccessor(remote(endpoint=server.address), caller=Caller.CLIENT)

    yield connect


def _create_in_threads(accessors: list[ModelAccessor]) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=lambda a=a, k=k: a.Widget(name=f"w{k}").save(), daemon=True)
        for k, a in enumerate(accessors)
    ]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("bound, expected", [(1, 1), (None, 3)])
def test_max_concurrent_calls_bounds_the_handlers_running_at_once(
    api_store: Store,
    start_server: Callable[..., ApiServer],
    clients: Callable[[ApiServer], ModelAccessor],
    bound: int | None,
    expected: int,
) -> None:
    server = start_server(api_store, max_concurrent_calls=bound)
    accessors = [clients(server) for _ in range(3)]
    for a in accessors:
        a.Widget.objects.count()  # logged in before the test
    blocking = _Blocking(api_store)
    threads = _create_in_threads(accessors)
    wait_for(lambda: blocking.running == expected)  # the others, if any, wait for a turn
    blocking.release.set()
    for t in threads:
        t.join(30)
    assert blocking.most == expected
    assert api_store.count("Widget") == 3


def test_writes_wait_for_the_backlog_and_reads_do_not(
    api_store: Store, start_server: Callable[..., ApiServer], clients: Callable[[ApiServer], ModelAccessor]
) -> None:
    backlog = [0]
    reads = [0]

    def probe() -> int:
        reads[0] += 1
        return backlog[0]

    server = start_server(api_store, backlog=probe, backlog_limit=10, backlog_wait=60)
    accessor = clients(server)
    accessor.Widget(name="before").save()  # not held: the backlog is 0
    assert server.service.gate.held == 0
    backlog[0] = 50
    first = reads[0]
    [writer] = _create_in_threads([clients(server)])
    wait_for(lambda: reads[0] >= first + 3)  # the write is held, looking at the backlog
    assert accessor.Widget.objects.count() == 1  # a read answers while the write waits
    assert writer.is_alive()
    backlog[0] = 0
    writer.join(30)
    assert not writer.is_alive()
    assert accessor.Widget.objects.count() == 2
    assert server.service.gate.held == 1


@pytest.mark.parametrize("backlog, yielded", [(3, True), (0, False)])
def test_calls_over_grpc_leave_the_synchronizer_its_share(
    api_store: Store,
    start_server: Callable[..., ApiServer],
    clients: Callable[[ApiServer], ModelAccessor],
    backlog: int,
    yielded: bool,
) -> None:
    # Each call is owed 19 times its handler's time: the next one, right behind, waits for it.
    server = start_server(api_store, backlog=lambda: backlog, sync_share=0.95)
    accessor = clients(server)
    for k in range(5):
        accessor.Widget(name=f"w{k}").save()
    assert accessor.Widget.objects.count() == 5
    gate = server.service.gate
    assert (gate.yielded >= 4) is yielded
    assert (gate.yielded == 0) is not yielded


def test_the_api_settings_of_the_gate(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("name: s\n")
    api = load_config(path).settings.api
    assert (api.max_concurrent_calls, api.backlog_limit, api.backlog_wait) == (1, 1000, 1.0)
    assert api.sync_share == 0.5
    path.write_text("name: s\napi:\n  backlog_limit: -1\n")
    with pytest.raises(ConfigError, match="backlog_limit"):
        load_config(path)
    path.write_text("name: s\napi:\n  sync_share: 1\n")
    with pytest.raises(ConfigError, match="sync_share"):
        load_config(path)
