"""The injected clock: a ManualClock stands still until told, runs its timers as time passes
them, and the activity tracker reads its time once a tick from whichever clock it is given."""

from __future__ import annotations

import time

from launcher.activity import ActivityTracker
from launcher.clock import REAL, ManualClock


def test_real_clock_is_the_machines() -> None:
    assert abs(REAL.time() - time.time()) < 1
    assert abs(REAL.monotonic() - time.monotonic()) < 1


def test_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(start=1000.0)
    assert (clock.time(), clock.monotonic()) == (1000.0, 0.0)
    assert clock.time() == 1000.0 and clock.time() == clock.time()
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (1002.5, 2.5)


def test_timers_run_in_order_each_at_its_moment() -> None:
    clock = ManualClock(start=0.0)
    ran: list[tuple[str, float]] = []
    clock.call_later(2, lambda: ran.append(("second", clock.time())))
    clock.call_later(1, lambda: ran.append(("first", clock.time())))
    clock.advance(1.5)
    assert ran == [("first", 1.0)]
    clock.advance(10)
    assert ran == [("first", 1.0), ("second", 2.0)]
    assert clock.time() == 11.5


def test_a_cancelled_timer_does_not_run() -> None:
    clock = ManualClock()
    ran: list[int] = []
    clock.call_later(1, lambda: ran.append(1)).cancel()
    clock.advance(5)
    assert ran == []


def test_a_timer_set_by_a_timer_runs_within_the_same_advance() -> None:
    clock = ManualClock(start=0.0)
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(clock.time())
        clock.call_later(1, tick)

    clock.call_later(1, tick)
    clock.advance(3.5)
    assert ticks == [1.0, 2.0, 3.0]


def test_activity_is_stamped_with_the_clocks_time_once_a_tick() -> None:
    clock = ManualClock(start=100.0)
    tracker = ActivityTracker(clock=clock)
    tracker.start()
    tracker.touch("alice")
    assert tracker.last_ms("alice") == 100_000
    clock.advance(0.5)
    tracker.touch("alice")
    assert tracker.last_ms("alice") == 100_000  # coarse: read once a second
    clock.advance(0.5)
    tracker.touch("alice")
    assert tracker.last_ms("alice") == 101_000
    tracker.stop()
    clock.advance(5)
    tracker.touch("alice")
    assert tracker.last_ms("alice") == 101_000  # stopped: no more ticks
