"""Progress lines, the rate and the ETA under a fixed-window budget (issue 11), on a fake clock."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

import tap_lofty.progress
import tap_lofty.tap
from tap_lofty.client import ClientStats
from tap_lofty.pagination import LEADS_PATH
from tap_lofty.progress import Progress
from tap_lofty.ratelimit import RequestBudget
from tap_lofty.streams import CallsStream
from tests.tap_support import run_tap, sim_config

CALLS_PATH = CallsStream.path
START = 1_790_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SimulatedRun:
    """A sync replayed on a fake clock through the real budget and Progress."""

    leads: int
    calls_requests: Callable[[int], int]  # call-page requests for lead i
    limit: int
    latency_s: float
    page_size: int = 100
    window_s: float = 60.0
    clock: FakeClock = field(default_factory=FakeClock)
    samples: list[tuple[float, float | None, float, str]] = field(default_factory=list)

    def run(self, sample_every: int) -> float:
        stats = ClientStats()
        budget = RequestBudget(
            self.limit, self.window_s, clock=self.clock.time, sleep=self.clock.sleep
        )
        progress = Progress(
            stats, budget, clock=self.clock.time, interval_s=1e9, leads_page_size=self.page_size
        )

        def request(path: str) -> None:
            budget.acquire()
            self.clock.now += self.latency_s
            budget.release()
            stats.requests += 1
            stats.by_path[path] = stats.by_path.get(path, 0) + 1

        for i in range(self.leads):
            if i % self.page_size == 0:
                request(LEADS_PATH)
                progress.leads_total = self.leads
            for _ in range(self.calls_requests(i)):
                request(CALLS_PATH)
            progress.lead_finished("calls", 1)
            if i % sample_every == sample_every - 1:
                now = self.clock.now
                elapsed = now - START
                self.samples.append(
                    (now, progress.eta_s(), progress.rate_per_min(elapsed), progress.line())
                )
        request(LEADS_PATH)  # the empty page that ends the scroll
        return self.clock.now


@pytest.mark.parametrize(
    ("limit", "latency_s"),
    [
        pytest.param(500, 0.05, id="budget-bound-500-per-min"),
        pytest.param(100, 0.2, id="budget-bound-100-per-min"),
        pytest.param(100_000, 0.05, id="latency-bound"),
    ],
)
def test_eta_is_within_25_percent_of_the_truth(limit, latency_s):
    sim = SimulatedRun(
        leads=1500,
        calls_requests=lambda i: 2 if i % 7 == 0 else 1,  # some leads need a second page
        limit=limit,
        latency_s=latency_s,
    )
    end = sim.run(sample_every=50)
    worst = 0.0
    for now, eta, rate, line in sim.samples:
        truth = end - now
        if truth < 5:
            continue  # the last seconds: a relative error means nothing there
        assert eta is not None, line
        error = abs(eta - truth) / truth
        worst = max(worst, error)
        assert error <= 0.25, f"ETA {eta:.0f} s, truth {truth:.0f} s: {line}"
        # the rate never exceeds the budget, whatever burst the window started with
        assert rate <= limit * 60 / sim.window_s + 1e-9, line
    print(f"limit {limit}/min: run {end - START:.0f} s, worst ETA error {worst:.1%}")


def test_rate_is_the_last_full_window_not_requests_over_elapsed():
    # 500 requests in the first 13 s, then a wait: the old rate said 2,273/min.
    sim = SimulatedRun(leads=1500, calls_requests=lambda i: 1, limit=500, latency_s=0.026)
    sim.run(sample_every=100)
    first_window = [(now, rate) for now, _, rate, _ in sim.samples if now - START < 60]
    later = [(now, rate) for now, _, rate, _ in sim.samples if now - START > 61]
    assert first_window and later
    assert all(rate <= 500 for _, rate in first_window)
    assert all(rate == 500 for _, rate in later), later  # each full window used the budget


def test_old_eta_would_have_said_30s_for_a_3_minute_run():
    """The case from the issue: the ETA from elapsed time per lead is far off, ours is not."""
    sim = SimulatedRun(leads=1500, calls_requests=lambda i: 1, limit=500, latency_s=0.026)
    end = sim.run(sample_every=300)
    now, eta, _, _ = sim.samples[0]  # 300 leads done, 12 s in
    truth = end - now
    naive = (1500 - 300) * (now - START) / 300
    assert abs(naive - truth) / truth > 0.5  # the old estimate
    assert eta is not None and abs(eta - truth) / truth <= 0.25


def test_waiting_for_the_window_is_said_by_the_ticker(caplog):
    clock = FakeClock()
    stats = ClientStats()
    budget = RequestBudget(3, 60.0, clock=clock.time, sleep=clock.sleep)
    progress = Progress(stats, budget, clock=clock.time, interval_s=10.0, leads_page_size=100)
    progress.leads_total = 40
    for _ in range(3):
        budget.acquire()
        budget.release()
        stats.requests += 1
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        clock.now += 9
        progress.tick()  # not due yet
        clock.now += 4
        progress.tick()
        progress.tick()  # just logged: not due again
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Progress: waiting 47 s for Lofty's rate-limit window; 3 of 3 used; leads 0/40, "
        "calls 0, requests 3 (3/min), rate-limit wait 0.0 s, retries 0, elapsed 13s"
    ]


def test_summary_counts_leads_listed_when_calls_are_not_read():
    clock = FakeClock()
    budget = RequestBudget(100, 60.0, clock=clock.time, sleep=clock.sleep)
    progress = Progress(ClientStats(), budget, clock=clock.time)
    progress.reads_histories = False
    progress.leads_total = 202
    for _ in range(202):
        progress.lead_listed()
    assert progress.summary().startswith("Sync finished: leads 202/202, calls 0,")


def test_summary_says_what_an_earlier_run_did():
    clock = FakeClock()
    budget = RequestBudget(100, 60.0, clock=clock.time, sleep=clock.sleep)
    progress = Progress(ClientStats(requests=10), budget, clock=clock.time, leads_page_size=100)
    progress.leads_total = 1500
    progress.leads_done_before = 800
    for _ in range(10):
        clock.now += 1
        progress.lead_finished("calls", 2)
    assert "leads 10/1,500 (+800 done by an earlier run)" in progress.summary()
    # 690 leads left at 1 request each, 10 s per 10 requests: well within the budget
    assert progress.eta_s() == pytest.approx(690 + 16 * 1.0, rel=0.05)


def test_ticker_thread_logs_and_stops_for_good(caplog, monkeypatch):
    monkeypatch.setattr(tap_lofty.progress, "TICK_S", 0.02)
    budget = RequestBudget(100, 60.0)
    progress = Progress(ClientStats(), budget, interval_s=0.1)
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        progress.start()
        time.sleep(0.5)
        progress.stop()
        count = len(caplog.records)
        time.sleep(0.3)
    assert count >= 3
    assert len(caplog.records) == count, "a line after stop()"


def test_a_line_every_interval_while_the_budget_holds_the_run(make_sim, caplog, monkeypatch):
    # A 2 s window stands in for Lofty's 60 s one, a 1 s interval for the 10 s one.
    monkeypatch.setattr(tap_lofty.tap, "WINDOW_S", 2.0)
    monkeypatch.setattr(tap_lofty.progress, "PROGRESS_INTERVAL_S", 1.0)
    monkeypatch.setattr(tap_lofty.progress, "TICK_S", 0.05)
    sim = make_sim(leads=25, seed=2, calls_per_lead_mean=1, big_leads=0, rate_limit=None)
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        run_tap(sim_config(sim, requests_per_minute=10, max_concurrency=2))
    progress = [r for r in caplog.records if r.getMessage().startswith("Progress: ")]
    assert any("for Lofty's rate-limit window; 10 of 10 used" in r.getMessage() for r in progress)
    times = [r.created for r in progress]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(progress) >= 5 and max(gaps) < 1.5, [r.getMessage() for r in progress]
    assert any(r.getMessage().startswith("Sync finished: leads 25/25") for r in caplog.records)


def test_summary_counts_leads_when_calls_are_deselected(make_sim, caplog):
    import json

    from tests.tap_support import ROOT

    sim = make_sim(leads=20, seed=8, calls_per_lead_mean=2, big_leads=0)
    catalog = json.loads((ROOT / "catalog.json").read_text())
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == "calls":
            for item in entry["metadata"]:
                if item["breadcrumb"] == []:
                    item["metadata"]["selected"] = False
    with caplog.at_level(logging.INFO, logger="tap_lofty"):
        out = run_tap(sim_config(sim), catalog=catalog)
    assert len(out.ids("leads", "leadId")) == 20 and "calls" not in out.records
    assert "Sync finished: leads 20/20, calls 0," in caplog.text
