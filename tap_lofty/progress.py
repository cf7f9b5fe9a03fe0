"""Progress lines for long runs, and the one-line summary at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tap_lofty.client import ClientStats
from tap_lofty.ratelimit import RequestBudget

LOGGER = logging.getLogger("tap_lofty")

#: Seconds between two progress lines.
PROGRESS_INTERVAL_S = 10.0


class Progress:
    """Counts leads and calls, and logs where the run stands about every 10 s."""

    def __init__(
        self,
        stats: ClientStats,
        budget: RequestBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = PROGRESS_INTERVAL_S,
    ) -> None:
        """Report on ``stats`` and ``budget``, which the client keeps up to date."""
        self._stats = stats
        self._budget = budget
        self._clock = clock
        self._interval_s = interval_s
        self._started = clock()
        self._last_line = self._started
        self.leads_total: int | None = None
        self.leads_done = 0
        self.leads_skipped: list[int] = []
        self.calls = 0

    def lead_finished(self, calls: int) -> None:
        """Count one lead whose calls are all emitted; log a line if one is due."""
        self.leads_done += 1
        self.calls += calls
        now = self._clock()
        if now - self._last_line >= self._interval_s:
            self._last_line = now
            LOGGER.info("Progress: %s", self.line(now))

    def lead_skipped(self, lead_id: int) -> None:
        """Count a lead that vanished between the listing and its call fetch."""
        self.leads_skipped.append(lead_id)

    def line(self, now: float | None = None, *, eta: bool = True) -> str:
        """Return where the run stands, in one line."""
        elapsed = max((now if now is not None else self._clock()) - self._started, 1e-9)
        rpm = self._stats.requests / elapsed * 60
        total = self.leads_total
        done = f"{self.leads_done:,}" + (f"/{total:,}" if total else "")
        until_done = ""
        if eta and total and self.leads_done:
            remaining = max(total - self.leads_done, 0) * elapsed / self.leads_done
            until_done = f", ETA {_duration(remaining)}"
        return (
            f"leads {done}, calls {self.calls:,}, requests {self._stats.requests:,} "
            f"({rpm:,.0f}/min), rate-limit wait {self._budget.held_s():,.1f} s, "
            f"retries {self._stats.retries}, elapsed {_duration(elapsed)}{until_done}"
        )

    def summary(self) -> str:
        """Return the end-of-run line, including leads skipped because Lofty no longer had them."""
        skipped = ""
        if self.leads_skipped:
            shown = ", ".join(str(i) for i in self.leads_skipped[:10])
            more = "..." if len(self.leads_skipped) > 10 else ""
            skipped = f"; {len(self.leads_skipped)} lead(s) gone before their calls: {shown}{more}"
        return (
            f"Sync finished: {self.line(eta=False)}, longest rate-limit wait "
            f"{self._budget.longest_wait_s:.1f} s, 429s {self._stats.rate_limited}{skipped}"
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
