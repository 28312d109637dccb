"""Dispatches of a case (docs/grouping.md, "What bodies receive"): how each method carries them.

A Dispatch v2 with ``case.role = opened`` is the case's dispatch to the body, the one it
answers: every method delivers it as a dispatch, saying it is a case. ``role = update`` is a
later report of the same case, folded into ``case.update_of``:

* webhook: POSTed like a dispatch, its body's ``case.role`` saying ``update`` and
  ``case.update_of`` naming the dispatch to answer (:mod:`veille.deliver.webhook`);
* e-mail: coalesced per case by :class:`UpdateCoalescer`: at most one update e-mail per case
  every ``email_update_minutes``, carrying the latest update (its count, severity, positions);
  the updates it covers get a receipt saying so. An update waiting for its e-mail is not
  done, so its offset is not committed: a restart re-reads it and, after a short grace that
  gathers the re-read backlog, mails the latest at once (the window lives in memory: the body
  may get an update e-mail sooner or twice after a restart, never loses the latest count);
* Open311: GeoReport v2 has no way to add to a service request, and a new request per
  report is what grouping avoids: an update is not sent, its receipt says why
  (:func:`open311_skip`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from veille.deliver import metrics
from veille.deliver.outcome import Attempt
from veille.schemas.models import CaseRole, DeliveryMethod, DeliveryOutcome, Dispatch


def is_update(dispatch: Dispatch) -> bool:
    return dispatch.case is not None and dispatch.case.role == CaseRole.update


def case_body(dispatch: Dispatch, severity_label: Callable[[str], str]) -> dict[str, Any] | None:
    """The webhook body's ``case`` (None: not grouped)."""
    case = dispatch.case
    if case is None:
        return None
    return {"id": str(case.id), "role": case.role.value,
            "update_of": None if case.update_of is None else str(case.update_of),
            "reports": case.reports, "severity": case.severity,
            "severity_label": severity_label(case.severity),
            "municipalities": list(case.municipalities),
            "positions": [{"lat": p.lat, "lon": p.lon} for p in case.positions]}


def open311_skip(dispatch: Dispatch) -> Attempt:
    """The receipt of an update not sent to an Open311 endpoint (see the module docstring)."""
    metrics.CASE_UPDATES.labels(DeliveryMethod.open311.value, "skipped").inc()
    case = dispatch.case
    assert case is not None
    return Attempt(method=DeliveryMethod.open311, outcome=DeliveryOutcome.delivered, latency_ms=0,
                   reply=f"skipped: update of case {case.id} ({case.reports} reports), not a new "
                         f"service request; the body answers dispatch {case.update_of}")


@dataclass
class _Pending:
    latest: Any  # the newest update's Job waiting for this case's next e-mail
    covered: list[Any] = field(default_factory=list)  # older updates the next e-mail stands for


RESTART_GRACE_SECONDS = 2.0
Send = Callable[[Any], Awaitable[bool]]  # one job's e-mail, retried until delivered (False: cancelled)
Cover = Callable[[Any, Any], None]  # (covered job, job whose e-mail stands for it)


class UpdateCoalescer:
    """At most one update e-mail per (body, case) every ``window`` seconds (module docstring).

    Runs on the engine's loop. ``sent`` marks when a case's last e-mail went (its opening
    e-mail counts: the first update waits a window after it). One flush per case at a time
    (its lock): updates that come while one is being sent wait for the next window."""

    def __init__(self, window: float, *, send: Send, cover: Cover,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.send = send
        self.cover = cover
        self.clock = clock
        self.sent: dict[tuple[str, str], float] = {}
        self.pending: dict[tuple[str, str], _Pending] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def key(dispatch: Dispatch) -> tuple[str, str]:
        assert dispatch.case is not None
        return dispatch.agency_id, str(dispatch.case.id)

    def opened(self, dispatch: Dispatch) -> None:
        if dispatch.case is not None:
            self.sent[self.key(dispatch)] = self.clock()

    def submit(self, job: Any) -> None:
        """Hold an update's e-mail until its case's window allows one; a newer update of the
        same case replaces it (the older is covered by the newer's e-mail)."""
        key = self.key(job.dispatch)
        pending = self.pending.get(key)
        if pending is None:
            self.pending[key] = _Pending(job)
            task = asyncio.get_running_loop().create_task(self._flush(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        newer, older = ((job, pending.latest) if _order(job) >= _order(pending.latest)
                        else (pending.latest, job))
        pending.latest = newer
        pending.covered.append(older)
        metrics.CASE_UPDATES.labels(DeliveryMethod.email.value, "coalesced").inc()

    async def _flush(self, key: tuple[str, str]) -> None:
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self.sent:
                # No e-mail of this case known to this process (a restart re-reading its
                # backlog): a short grace gathers the re-read updates into one e-mail.
                await asyncio.sleep(min(self.window, RESTART_GRACE_SECONDS))
            while (wait := self.sent.get(key, float("-inf")) + self.window - self.clock()) > 0:
                await asyncio.sleep(wait)
            pending = self.pending.pop(key)
            if not await self.send(pending.latest):
                return  # cancelled (its partition was revoked): the covered stay undone, re-read
            self.sent[key] = self.clock()
            metrics.CASE_UPDATES.labels(DeliveryMethod.email.value, "sent").inc()
            for old in pending.covered:  # only once the e-mail standing for them went
                self.cover(old, pending.latest)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _order(job: Any) -> tuple[int, float]:
    case = job.dispatch.case
    return case.reports, job.dispatch.routed_at.timestamp()


__all__ = ["UpdateCoalescer", "case_body", "is_update", "open311_skip"]
