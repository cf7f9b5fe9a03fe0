"""Progress lines for long runs, and the one-line summary at the end.

A line comes at least every :data:`PROGRESS_INTERVAL_S` seconds whatever the tap is
doing: after a lead when one is due, and otherwise from a small daemon thread (started
with the sync), which also says when the tap is waiting for Lofty's rate-limit window.

The rate is the request count of the last complete budget window, per minute: Lofty's
budget is a fixed window, so the tap sends a burst at the start of each window and
then waits, and requests divided by elapsed time says nothing useful. The ETA follows
the same model: the requests still needed are sent as fast as the run has shown it
can send them, but no more than the budget allows per window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from tap_lofty.client import ClientStats
from tap_lofty.pagination import LEADS_PATH
from tap_lofty.ratelimit import BudgetStatus, RequestBudget

LOGGER = logging.getLogger("tap_lofty")

#: Seconds between two progress lines.
PROGRESS_INTERVAL_S = 10.0
#: How often the ticker thread checks whether a line is due.
TICK_S = 1.0


class Progress:
    """Counts leads and calls, and logs where the run stands about every 10 s.

    Hooks for the streams: :meth:`lead_listed` for every lead the listing yields,
    :meth:`lead_finished` when one stream has emitted a lead's records, :meth:`lead_skipped`,
    and :attr:`leads_done_before` for the leads an interrupted earlier run finished.
    """

    def __init__(
        self,
        stats: ClientStats,
        budget: RequestBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float | None = None,
        leads_page_size: int | None = None,
    ) -> None:
        """Report on ``stats`` and ``budget``, which the client keeps up to date."""
        self._stats = stats
        self._budget = budget
        self._clock = clock
        # Read at run time, not import time, so that a test can shorten it.
        self._interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self._started = clock()
        self._last_line = self._started
        #: Leads per listing page, to count the listing requests still to come.
        self.leads_page_size = leads_page_size
        #: Whether this run reads per-lead histories; when not (only ``leads``
        #: selected), a lead is done once listed.
        self.reads_histories = True
        self.leads_total: int | None = None
        self.leads_listed = 0
        #: Leads done and records emitted, per per-lead stream (calls, texts, ...).
        self._leads_by_stream: dict[str, int] = {}
        self.records: dict[str, int] = {"calls": 0}
        #: Leads an interrupted earlier run already finished (set when resuming).
        self.leads_done_before = 0
        self._skipped: dict[int, None] = {}  # in order, each lead once
        # Lines are logged under this lock, and stop() takes it: after stop() returns
        # no thread logs another line (the run's error is meant to be the last one).
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    # ------------------------------------------------------------------ hooks

    def lead_listed(self) -> None:
        """Count one lead yielded by the listing."""
        self.leads_listed += 1
        if not self.reads_histories:
            self._maybe_log()

    def lead_finished(self, stream: str, records: int) -> None:
        """Count one lead whose ``stream`` records are all emitted; log a line if one is due."""
        self._leads_by_stream[stream] = self._leads_by_stream.get(stream, 0) + 1
        self.records[stream] = self.records.get(stream, 0) + records
        self._maybe_log()

    def lead_skipped(self, lead_id: int) -> None:
        """Count a lead that vanished between the listing and its history fetch."""
        self._skipped[lead_id] = None

    @property
    def leads_done(self) -> int:
        """Leads whose histories are read (the per-lead streams go through leads together)."""
        return max(self._leads_by_stream.values(), default=0)

    @property
    def leads_skipped(self) -> list[int]:
        """Leads that vanished between the listing and a history fetch, each once."""
        return list(self._skipped)

    # ------------------------------------------------------------------ the ticker

    def start(self) -> None:
        """Start the thread that logs a line whenever none came for ``interval_s``."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick_loop, name="progress", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        """Stop the ticker; once this returns, no progress line is logged any more."""
        with self._lock:
            self._stopped.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    def tick(self) -> None:
        """Log a line if none came for ``interval_s`` (the ticker calls this every second)."""
        self._maybe_log()

    def _tick_loop(self) -> None:
        while not self._stopped.wait(min(TICK_S, self._interval_s / 2)):
            self.tick()

    def _maybe_log(self) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            now = self._clock()
            if now - self._last_line < self._interval_s:
                return
            self._last_line = now
            LOGGER.info("Progress: %s", self.line(now))

    # ------------------------------------------------------------------ the lines

    @property
    def _done(self) -> int:
        return self.leads_done if self.reads_histories else self.leads_listed

    def line(self, now: float | None = None, *, eta: bool = True) -> str:
        """Return where the run stands, in one line."""
        elapsed = max((now if now is not None else self._clock()) - self._started, 1e-9)
        status = self._budget.status()
        total = self.leads_total
        done = f"{self._done:,}" + (f"/{total:,}" if total else "")
        if self.leads_done_before:
            done += f" (+{self.leads_done_before:,} done by an earlier run)"
        until_done = ""
        if eta:
            seconds = self.eta_s(now, status=status)
            if seconds is not None:
                until_done = f", ETA {_duration(seconds)}"
        records = ", ".join(f"{stream} {n:,}" for stream, n in self.records.items())
        waiting = ""
        if status.wait_s >= 1:
            used = (
                "Lofty reports none left"
                if status.server_held
                else f"{status.used:,} of {status.limit:,} used"
            )
            waiting = f"waiting {status.wait_s:.0f} s for Lofty's rate-limit window; {used}; "
        return (
            f"{waiting}leads {done}, {records}, requests {self._stats.requests:,} "
            f"({self.rate_per_min(elapsed, status):,.0f}/min), rate-limit wait "
            f"{self._budget.held_s():,.1f} s, retries {self._stats.retries}, elapsed "
            f"{_duration(elapsed)}{until_done}"
        )

    def rate_per_min(self, elapsed: float, status: BudgetStatus | None = None) -> float:
        """Return the requests per minute of the last complete budget window.

        Until a window has completed: the pace so far, but no more than the budget
        allows per window (a window starts with a burst, so the pace overstates it).
        """
        status = status or self._budget.status()
        per_min = 60.0 / status.window_s
        if status.last_full_window is not None:
            return status.last_full_window * per_min
        pace = self._stats.requests / max(elapsed, 1e-9) * 60.0
        return min(pace, status.limit * per_min)

    def requests_left(self) -> float | None:
        """Estimate the requests the run still needs; None before it can tell."""
        total = self.leads_total
        if not total:
            return None
        leads_left = max(total - self.leads_done_before - self._done, 0)
        listing_done = self._stats.by_path.get(LEADS_PATH, 0)
        pages_left = 0
        if self.leads_page_size:
            # The scroll ends at an empty page or one without a scrollId: one more.
            pages_left = max(math.ceil(total / self.leads_page_size) + 1 - listing_done, 0)
        if not self.reads_histories:
            return float(pages_left)
        if not self.leads_done:
            return None  # requests per lead not known yet
        per_lead = self._stats.requests - listing_done  # all but the listing pages
        return leads_left * per_lead / self.leads_done + pages_left

    def eta_s(
        self, now: float | None = None, *, status: BudgetStatus | None = None
    ) -> float | None:
        """Seconds until the run is done, from the budget, the requests left and the window."""
        left = self.requests_left()
        if left is None:
            return None
        status = status or self._budget.status()
        elapsed = max((now if now is not None else self._clock()) - self._started, 1e-9)
        # How fast the run sends requests when the budget does not hold it back.
        unheld = max(elapsed - self._budget.held_s(), 1e-9)
        speed = self._stats.requests / unheld
        if speed <= 0:
            return None
        return budget_eta(left, speed, status)

    def summary(self) -> str:
        """Return the end-of-run line, including leads skipped because Lofty no longer had them."""
        skipped = ""
        if self.leads_skipped:
            shown = ", ".join(str(i) for i in self.leads_skipped[:10])
            more = "..." if len(self.leads_skipped) > 10 else ""
            skipped = (
                f"; {len(self.leads_skipped)} lead(s) gone before their records were read: "
                f"{shown}{more}"
            )
        return (
            f"Sync finished: {self.line(eta=False)}, longest rate-limit wait "
            f"{self._budget.longest_wait_s:.1f} s, 429s {self._stats.rate_limited}{skipped}"
        )


def budget_eta(requests: float, speed: float, status: BudgetStatus) -> float:
    """Seconds to send ``requests`` at ``speed`` per second under a fixed-window budget.

    In each window the tap sends as fast as it can until the window's budget is used,
    then waits for the next window: the current window has ``limit - used`` left and
    ends in ``window_left_s``; every later window allows ``limit``.
    """
    if requests <= 0:
        return 0.0
    window = status.window_s
    if status.window_left_s is None:  # no request yet: a fresh window starts now
        t, window_end, available = 0.0, window, float(status.limit)
    elif status.server_held:  # Lofty holds every request until its own reset
        t = status.wait_s
        window_end, available = t + window, float(status.limit)
    else:
        t, window_end = 0.0, status.window_left_s
        available = float(max(status.limit - status.used, 0))
    # The rest of the current window.
    can = min(available, speed * max(window_end - t, 0.0))
    if requests <= can:
        return t + requests / speed
    requests -= can
    # Whole windows at up to ``limit`` each, then the part of the last one.
    per_window = min(float(status.limit), speed * window)
    whole = math.ceil(requests / per_window) - 1
    return window_end + whole * window + (requests - whole * per_window) / speed


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
