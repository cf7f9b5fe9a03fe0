"""The one request budget that every Lofty request of a run draws on.

Lofty limits each app to a fixed number of requests per 60 s window and reports the
window in ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``.
The budget is proactive (never send more than the configured number per window) and
reactive (the server's ``Remaining`` can only lower what is left, and a 429 waits for
the reset). It is shared by all streams and all worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Lofty resets its rate-limit window every 60 s.
WINDOW_S = 60.0
#: Added to every wait for a reset, so a request never lands just before it.
RESET_MARGIN_S = 1.0


class RunAborted(Exception):  # noqa: N818 (not an error of its own: the reason is elsewhere)
    """The run has already failed for another reason; stop quietly.

    Raised in worker threads after :meth:`RequestBudget.abort` (or
    ``LoftyClient.abort``), so that they neither wait nor retry nor log once the
    run's real error is on its way to the user.
    """


@dataclass(frozen=True)
class BudgetStatus:
    """A snapshot of the budget, for progress lines and the ETA."""

    limit: int
    window_s: float
    #: Requests sent in the current window (0 before the first request).
    used: int
    #: Seconds until the current window ends; None before the first request.
    window_left_s: float | None
    #: Requests sent in the last complete window; None until one has completed.
    last_full_window: int | None
    #: Seconds a request would have to wait now (0 when one may go at once).
    wait_s: float
    #: Whether the wait is Lofty's (X-RateLimit-Remaining or a 429) rather than ours.
    server_held: bool


def seconds_until_reset(raw: str | None, *, now: float, window_s: float = WINDOW_S) -> float | None:
    """Read ``X-RateLimit-Reset`` defensively and return seconds to wait, or None.

    Lofty documents UTC epoch seconds, but its own example shows ``21000``, so the value
    may also be epoch milliseconds, milliseconds to wait or seconds to wait. Whatever
    it is, the result is capped at one window plus a margin: no single wait can
    exceed that, since the window is fixed at 60 s.
    """
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if value < 0:
        return None
    if value >= 1e12:  # epoch milliseconds
        wait = value / 1000.0 - now
    elif value >= 1e9:  # epoch seconds, as documented
        wait = value - now
    elif value > window_s + RESET_MARGIN_S:  # e.g. 21000: milliseconds to wait
        wait = value / 1000.0
    else:  # seconds to wait
        wait = value
    return min(max(wait, 0.0), window_s + RESET_MARGIN_S)


class RequestBudget:
    """A fixed-window request budget, safe to share between threads.

    Two limits apply at once: the tap's own (``requests_per_window`` per window,
    counted from the first request) and the server's, as last reported in
    ``X-RateLimit-Remaining`` until its ``X-RateLimit-Reset``. ``acquire()`` is called
    before every request attempt (retries included) and waits until both allow one
    more; ``observe()`` and ``release()`` are called with every response.
    """

    def __init__(
        self,
        requests_per_window: int,
        window_s: float = WINDOW_S,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """Create a budget of ``requests_per_window`` requests every ``window_s`` s.

        ``sleep`` is for tests with a fake clock; by default waits end early on abort().
        """
        if requests_per_window < 1:
            msg = "requests_per_window must be at least 1"
            raise ValueError(msg)
        self.limit = requests_per_window
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window_end: float | None = None
        self._remaining = requests_per_window
        #: What the server last said is left, lowered by every request since; None
        #: when unknown or when its window has reset.
        self._server_remaining: int | None = None
        self._server_reset_at = 0.0
        self._in_flight = 0
        self.requests_sent = 0
        self.longest_wait_s = 0.0
        # Wall time during which at least one thread waited: with several threads
        # waiting at once, the sum of their waits would overstate it.
        self._waiting = 0
        self._held_since = 0.0
        self._held_s = 0.0
        self._window_used = 0
        self._last_full_window: int | None = None
        # True until the first answer moves the first window's end (see release()).
        self._aligning = True
        # Set by abort(): waits end at once, and acquire() raises RunAborted.
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Wake every waiting thread and refuse further requests (the run has failed)."""
        self._aborted.set()

    def _roll(self, now: float) -> None:
        """Start a new window if the current one has ended (caller holds the lock)."""
        if self._window_end is None or now < self._window_end:
            return
        # Fixed windows from the first request, like Lofty's: they do not drift with
        # the moment the next request happens to come.
        elapsed_windows = (now - self._window_end) // self.window_s + 1
        self._window_end += elapsed_windows * self.window_s
        self._aligning = False
        # A window without requests between the two was complete too, and empty.
        self._last_full_window = self._window_used if elapsed_windows == 1 else 0
        self._window_used = 0
        self._remaining = self.limit

    def _pause(self, now: float) -> float:
        pause = 0.0
        if self._window_end is not None and self._remaining <= 0:
            pause = self._window_end - now
        if self._server_remaining is not None and self._server_remaining <= 0:
            pause = max(pause, self._server_reset_at - now)
        return pause

    def status(self) -> BudgetStatus:
        """Where the budget stands now."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            if self._server_remaining is not None and now >= self._server_reset_at:
                self._server_remaining = None
            own_wait = (
                self._window_end - now
                if self._window_end is not None and self._remaining <= 0
                else 0.0
            )
            wait = self._pause(now)
            return BudgetStatus(
                limit=self.limit,
                window_s=self.window_s,
                used=self._window_used,
                window_left_s=None if self._window_end is None else self._window_end - now,
                last_full_window=self._last_full_window,
                wait_s=max(wait, 0.0),
                server_held=wait > own_wait,
            )

    def acquire(self) -> float:
        """Block until one more request may be sent; return the seconds waited."""
        waited = 0.0
        waiting = False
        while True:
            if self._aborted.is_set():
                with self._lock:
                    if waiting:
                        self._waiting -= 1
                        if self._waiting == 0:
                            self._held_s += self._clock() - self._held_since
                raise RunAborted
            with self._lock:
                now = self._clock()
                if self._window_end is None:
                    self._window_end = now + self.window_s
                else:
                    self._roll(now)
                if self._server_remaining is not None and now >= self._server_reset_at:
                    self._server_remaining = None
                pause = self._pause(now)
                if pause <= 0:
                    self._remaining -= 1
                    self._window_used += 1
                    if self._server_remaining is not None:
                        self._server_remaining -= 1
                    self._in_flight += 1
                    self.requests_sent += 1
                    self.longest_wait_s = max(self.longest_wait_s, waited)
                    if waiting:
                        self._waiting -= 1
                        if self._waiting == 0:
                            self._held_s += now - self._held_since
                    return waited
                if not waiting:
                    waiting = True
                    if self._waiting == 0:
                        self._held_since = now
                    self._waiting += 1
            # Sleep outside the lock so other threads can observe() meanwhile; the
            # default sleep is the abort event's wait, so abort() ends it at once.
            if self._sleep is None:
                self._aborted.wait(pause)
            else:
                self._sleep(pause)
            waited += pause

    def held_s(self) -> float:
        """Seconds of wall time so far during which the budget held back a request."""
        with self._lock:
            ongoing = self._clock() - self._held_since if self._waiting else 0.0
            return self._held_s + ongoing

    def release(self) -> None:
        """Mark one acquired request as answered (or failed)."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)
            if self._aligning and self._window_end is not None:
                # Lofty's window starts when Lofty counts the first request, somewhere
                # between its send and its answer. Ending the first window one window
                # after the answer makes every later window end no earlier than
                # Lofty's, so the burst that opens a window never lands in Lofty's
                # previous one (by arrival, a few requests of it did, in tests).
                self._aligning = False
                self._window_end = max(self._window_end, self._clock() + self.window_s)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Lower the budget to what the server says is left in its window.

        Call it before :meth:`release` for the same response. The server's count only
        ever lowers what the tap may send: a larger ``Remaining`` never lets the tap
        exceed its own setting. Requests still in flight may not be counted by the
        server yet, so they are taken off what it reports.
        """
        reported = _int_header(headers.get("X-RateLimit-Remaining"))
        if reported is None:
            return
        with self._lock:
            now = self._clock()
            remaining = reported - (self._in_flight - 1)
            if self._server_remaining is None or remaining < self._server_remaining:
                self._server_remaining = remaining
            reset_in = seconds_until_reset(
                headers.get("X-RateLimit-Reset"), now=now, window_s=self.window_s
            )
            if reset_in is None:  # no usable reset: assume a whole window
                reset_in = self.window_s if self._server_remaining <= 0 else 0.0
            self._server_reset_at = max(self._server_reset_at, now + reset_in + RESET_MARGIN_S)

    def wait_for_reset(self, headers: Mapping[str, str]) -> float:
        """After a 429: hold every request until the server's window resets; return the wait.

        The wait itself happens in the next ``acquire()``, so every thread pauses.
        """
        with self._lock:
            now = self._clock()
            reset_in = seconds_until_reset(
                headers.get("X-RateLimit-Reset"), now=now, window_s=self.window_s
            )
            if reset_in is None:  # no usable header: wait out one full window
                reset_in = self.window_s
            self._server_remaining = 0
            self._server_reset_at = now + reset_in + RESET_MARGIN_S
            return self._server_reset_at - now


def _int_header(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(float(raw.strip()))
    except ValueError:
        return None
