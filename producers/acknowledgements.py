"""The broker's acknowledgements of the intake's events, served on the intake's event loop.

Each request of a front-end awaits its own delivery report through an asyncio future
(``gate.deliver``). The reports are served by :func:`serve_reports`, a task of the event loop
that polls the producer while events are in flight, so a report resolves its future on the
loop's own thread: no thread hop per report.

Why not a poller thread: confluent-kafka takes the GIL back for each delivery callback it runs,
so a thread serving reports while the loop thread handles requests paid a GIL hand-over per
report (up to the 5 ms switch interval each, in series): under 64 concurrent clients the time
from produce to acknowledgement was 74-120 ms on average where the broker answers in a few.

A report served on another thread anyway (a blocking ``Publisher.flush`` run in an executor)
still reaches its future, through the loop's thread-safe hand-over, in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable

from veille.producers.sdk import DeliveryReport, Publisher

POLL_SECONDS = 0.001  # between two polls while events are in flight: the added latency's bound
IDLE_SECONDS = 0.1  # between two polls with nothing in flight (a new event wakes it at once)

Waiter = asyncio.Future[DeliveryReport | None]


class Acknowledgements:
    """Futures of the events in flight, resolved by their delivery reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[Waiter, DeliveryReport]] = []
        self._scheduled = False
        self._loop_thread: int | None = None
        self.wake = asyncio.Event()

    def waiter(self, loop: asyncio.AbstractEventLoop) -> tuple[Waiter, Callable[[DeliveryReport], None]]:
        """A future resolved with the report (None: see :func:`expire`), and the callback that
        resolves it, from whichever thread serves the report."""
        self._loop_thread = threading.get_ident()
        self.wake.set()
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


async def serve_reports(publisher: Publisher, acks: Acknowledgements) -> None:
    """Serve the publisher's delivery reports on this loop until cancelled."""
    while True:
        publisher.poll(0)
        if len(publisher):
            await asyncio.sleep(POLL_SECONDS)
            continue
        acks.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acks.wake.wait(), IDLE_SECONDS)
