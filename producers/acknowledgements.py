"""The broker's acknowledgements of the intake's events, handed to the requests awaiting them.

Each request of a front-end awaits its own delivery report through an asyncio future
(``gate.deliver``). The producer's poller thread serves the reports; they cross to the event
loop in batches: one thread-safe wake-up of the loop per batch of reports served together,
not one per report (a self-pipe write and a loop iteration each under a flood). A report
served on the loop's own thread (a flush run inline) resolves its future directly.

Measured (benchmarks/intake_http.py): serving the reports from a task of the event loop
instead of the thread (a poll every millisecond while events are in flight) cost 4-5 % of the
loop's time under 64 concurrent clients and did not shorten the time to acknowledgement, so
the thread stays.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

from veille.producers.sdk import DeliveryReport

Waiter = asyncio.Future[DeliveryReport | None]


class Acknowledgements:
    """Futures of the events in flight, resolved by their delivery reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[Waiter, DeliveryReport]] = []
        self._scheduled = False
        self._loop_thread: int | None = None

    def waiter(self, loop: asyncio.AbstractEventLoop) -> tuple[Waiter, Callable[[DeliveryReport], None]]:
        """A future resolved with the report (None: see :func:`expire`), and the callback that
        resolves it, from whichever thread serves the report."""
        self._loop_thread = threading.get_ident()
        future: Waiter = loop.create_future()
        return future, functools.partial(self._report, loop, future)

    def _report(self, loop: asyncio.AbstractEventLoop, future: Waiter, report: DeliveryReport) -> None:
        if threading.get_ident() == self._loop_thread:
            if not future.done():  # done: the request timed out or went away
                future.set_result(report)
            return
        with self._lock:
            self._pending.append((future, report))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody waits any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _drain(self) -> None:  # the event loop
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for future, report in batch:
            if not future.done():
                future.set_result(report)


def expire(future: Waiter) -> None:
    """Resolve ``future`` with None (not acknowledged in time) unless its report came."""
    if not future.done():
        future.set_result(None)
