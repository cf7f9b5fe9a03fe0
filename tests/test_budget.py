"""The request budget's window alignment and its status snapshot (issue 11)."""

from __future__ import annotations

import pytest

from tap_lofty.ratelimit import RequestBudget

NOW = 1_790_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_first_window_ends_one_window_after_the_first_answer():
    # Lofty counts the first request between its send and its answer; a window timed
    # from the send ends early, and the next window's burst lands in Lofty's previous one.
    clock = FakeClock()
    budget = RequestBudget(3, 60.0, clock=clock.time, sleep=clock.sleep)
    budget.acquire()
    clock.now += 0.5  # the first answer comes half a second later
    budget.release()
    budget.acquire()
    budget.acquire()
    clock.now = NOW + 60.2
    budget.acquire()  # the window is used up until NOW + 60.5, not NOW + 60
    assert clock.sleeps == [pytest.approx(0.3)]
    # later windows keep that alignment, and later answers do not move it
    budget.release()
    budget.acquire()
    budget.acquire()
    clock.now = NOW + 120.4
    budget.release()
    budget.acquire()
    assert clock.sleeps[-1] == pytest.approx(0.1)


def test_status_reports_use_wait_and_the_last_full_window():
    clock = FakeClock()
    budget = RequestBudget(2, 60.0, clock=clock.time, sleep=clock.sleep)
    fresh = budget.status()
    assert (fresh.used, fresh.window_left_s, fresh.last_full_window) == (0, None, None)
    budget.acquire()
    budget.release()
    budget.acquire()
    clock.now += 20
    held = budget.status()
    assert held.used == 2 and held.wait_s == pytest.approx(40) and not held.server_held
    clock.now += 45  # the window rolled over
    rolled = budget.status()
    assert (rolled.used, rolled.last_full_window, rolled.wait_s) == (0, 2, 0.0)
    clock.now += 200  # empty windows count as full windows of 0
    assert budget.status().last_full_window == 0
    budget.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"})
    lofty = budget.status()
    assert lofty.server_held and lofty.wait_s == pytest.approx(31)
