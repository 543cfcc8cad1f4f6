"""The runtime's clocks: the fake one tests drive, and the real one's timers."""

from __future__ import annotations

import threading

from actors.runtime.clock import FakeClock, RealClock


def test_fake_clock_moves_only_when_advanced():
    clock = FakeClock(start=100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == 102.5


def test_fake_clock_fires_due_timers_in_order_at_their_own_time():
    clock = FakeClock(start=0.0)
    fired: list[tuple[str, float]] = []
    clock.call_later(3.0, lambda: fired.append(("c", clock.now())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now())))
    clock.call_later(2.0, lambda: fired.append(("b", clock.now())))
    clock.advance(1.5)
    assert fired == [("a", 1.0)]
    assert clock.pending_timers() == 2
    clock.advance(10.0)
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 11.5
    assert clock.pending_timers() == 0


def test_fake_clock_runs_a_zero_delay_timer_at_once():
    clock = FakeClock()
    fired: list[int] = []
    clock.call_later(0.0, lambda: fired.append(1))
    clock.call_later(-1.0, lambda: fired.append(2))
    assert fired == [1, 2]
    assert clock.pending_timers() == 0


def test_fake_clock_cancelled_timer_never_fires():
    clock = FakeClock()
    fired: list[int] = []
    timer = clock.call_later(1.0, lambda: fired.append(1))
    clock.call_later(2.0, lambda: fired.append(2))
    timer.cancel()
    assert clock.pending_timers() == 1
    clock.advance(5.0)
    assert fired == [2]


def test_fake_clock_timer_set_by_a_callback_fires_in_the_same_advance():
    clock = FakeClock(start=0.0)
    fired: list[float] = []

    def first() -> None:
        fired.append(clock.now())
        clock.call_later(1.0, lambda: fired.append(clock.now()))

    clock.call_later(1.0, first)
    clock.advance(5.0)
    assert fired == [1.0, 2.0]


def test_real_clock_fires_timers_in_due_order_and_skips_cancelled():
    clock = RealClock()
    fired: list[str] = []
    done = threading.Event()
    cancelled = clock.call_later(0.01, lambda: fired.append("cancelled"))
    clock.call_later(0.06, lambda: (fired.append("late"), done.set()))
    clock.call_later(0.02, lambda: fired.append("early"))
    cancelled.cancel()
    assert done.wait(5), "the timer did not fire"
    assert fired == ["early", "late"]


def test_real_clock_survives_a_failing_callback():
    clock = RealClock()
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("timer callback failed")

    clock.call_later(0.0, boom)
    clock.call_later(0.01, done.set)
    assert done.wait(5), "the clock thread died with the failing callback"
