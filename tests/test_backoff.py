"""The one backoff helper: growth, cap, jitter bounds, and the step-from-previous form."""

from __future__ import annotations

import pytest

from actors._backoff import Backoff


def test_delays_grow_by_factor_and_stop_at_the_cap() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.delay(n) for n in range(0, 6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert Backoff(initial=1.0, maximum=60.0).delay(10_000) == 60.0


def test_jitter_stays_within_its_band() -> None:
    backoff = Backoff(initial=1.0, maximum=100.0, jitter=0.5)
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(("previous", "expected"), [(0.0, 0.5), (0.5, 1.0), (20.0, 30.0)])
def test_after_steps_from_the_previous_delay(previous: float, expected: float) -> None:
    assert Backoff(initial=0.5, maximum=30.0).after(previous) == expected
