"""The router's faust worker, with a bound on how long stopping may take.

On SIGTERM faust stops its services one after the other, each with its own timeout; with the
broker unreachable the consumer, the producer and the table manager each wait theirs out, and
the router was still running a minute later. An orchestrator would then SIGKILL it anyway, so
the worker exits by itself after ``router_stop_seconds``.

Exiting early is safe: an event is acked only after its outputs are durable, and offsets are
committed only for acked events (``streams/app.py``). What an early exit skips is the last
commit, so at most the events since the previous commit are read again by the next router,
which is what a crash already does (deterministic dispatch ids, deduplicated store).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import faust

log = logging.getLogger("veille.router")

EXIT_STOP_DEADLINE = 0  # a requested stop that completed the only way left: not a failure


class Worker(faust.Worker):
    def __init__(self, *args: object, stop_seconds: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.stop_seconds = stop_seconds

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            deadline = threading.Timer(self.stop_seconds, _exit_now, (self.stop_seconds,))
            deadline.daemon = True
            deadline.start()
        super()._schedule_shutdown(signal)


def _exit_now(seconds: float) -> None:
    log.warning("the router did not stop within %.0f s (broker unreachable?): exiting now; "
                "events read since the last commit will be read again", seconds)
    logging.shutdown()
    os._exit(EXIT_STOP_DEADLINE)
