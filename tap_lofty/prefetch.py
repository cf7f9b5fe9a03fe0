"""Bounded concurrency for call-history fetches, with results handed back in order.

The SDK syncs a child stream one parent record at a time. Lofty's cost is one request
per lead at a latency of a few hundred milliseconds, so a serial tap leaves most of its
request budget unused. Here a small thread pool fetches the call histories of the next
few leads while the main thread emits the current one. Records and STATE still come out
in listing order, so output is deterministic and a lead counts as done only once all
of its calls are emitted.

The workers are daemon threads, not a ``ThreadPoolExecutor``'s: Python joins executor
threads at exit, so after a fatal error a worker still waiting for a response (up to
``request_timeout``) or retrying would keep the failed run alive for minutes.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[int], object], int, Future]


class OrderedPrefetcher(Generic[T]):
    """Runs ``fetch(key)`` on up to ``workers`` threads; ``take`` returns results in order."""

    def __init__(self, fetch: Callable[[int], T], workers: int) -> None:
        """Create a prefetcher with ``workers`` threads (at least 1)."""
        self._fetch = fetch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"prefetch_{n}", daemon=True)
            for n in range(max(workers, 1))
        ]
        for thread in self._threads:
            thread.start()
        self._pending: deque[tuple[int, Future[T]]] = deque()
        self._closed = False

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fetch, key, future = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled by close() before it started
            try:
                result = fetch(key)
            except BaseException as exc:  # handed to take(), like an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def submit(self, key: int) -> None:
        """Start fetching ``key`` in the background."""
        if self._closed:
            msg = "prefetcher is closed"
            raise RuntimeError(msg)
        future: Future[T] = Future()
        self._pending.append((key, future))
        self._jobs.put((self._fetch, key, future))

    def take(self, key: int) -> T:
        """Wait for ``key``'s result (or its exception); keys come back in submit order."""
        if not self._pending or self._pending[0][0] != key:
            expected = self._pending[0][0] if self._pending else None
            msg = f"prefetch out of order: asked for {key}, next is {expected}"
            raise RuntimeError(msg)
        _, future = self._pending.popleft()
        return future.result()

    def close(self, *, wait: bool = True) -> None:
        """Cancel what has not started and stop the threads.

        ``wait=False`` (after a failure) does not wait for fetches under way; they end
        on their own once the client is aborted, and cannot keep the process alive.
        """
        self._closed = True
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
