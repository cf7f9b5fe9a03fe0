"""Bounded concurrency for call-history fetches, with results handed back in order.

The SDK syncs a child stream one parent record at a time. Lofty's cost is one request
per lead at a latency of a few hundred milliseconds, so a serial tap leaves most of its
request budget unused. Here a small thread pool fetches the call histories of the next
few leads while the main thread emits the current one. Records and STATE still come out
in listing order, so output is deterministic and a lead counts as done only once all
of its calls are emitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedPrefetcher(Generic[T]):
    """Runs ``fetch(key)`` on up to ``workers`` threads; ``take`` returns results in order."""

    def __init__(self, fetch: Callable[[int], T], workers: int) -> None:
        """Create a prefetcher with ``workers`` threads (at least 1)."""
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="calls")
        self._pending: deque[tuple[int, Future[T]]] = deque()
        #: How many leads to keep in flight so every worker has one to fetch.
        self.lookahead = max(workers, 1) * 2

    def submit(self, key: int) -> None:
        """Start fetching ``key`` in the background."""
        self._pending.append((key, self._pool.submit(self._fetch, key)))

    def take(self, key: int) -> T:
        """Wait for ``key``'s result (or its exception); keys come back in submit order."""
        if not self._pending or self._pending[0][0] != key:
            expected = self._pending[0][0] if self._pending else None
            msg = f"prefetch out of order: asked for {key}, next is {expected}"
            raise RuntimeError(msg)
        _, future = self._pending.popleft()
        return future.result()

    def __contains__(self, key: int) -> bool:
        """Whether ``key`` is the next result waiting to be taken."""
        return bool(self._pending) and self._pending[0][0] == key

    def close(self) -> None:
        """Cancel what has not started and stop the threads."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
