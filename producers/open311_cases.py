"""What a report grouped into a case answers with: its case's status (issue 25, docs/grouping.md
"What the store and the residents see"). Pure helpers of the Open311 read model
(``veille.producers.open311_requests.RequestBook``), which holds one case entry per case beside
its requests.

Bodies answer a case on its dispatch: the case's first report's (its id is the case id), or,
for a body that first received the case through a later report (a report from the next town
reaching that town's services), that report's. The status updates of a case are therefore keyed
by the incident ids of a few of its reports, and read by the book from every partition of
``<prefix>.routed``. The case entry's :class:`~veille.notify.changes.Track` holds every body's
latest status over all of the case's reports, so its overall state (``changes.overall``) is the
state every report of the case answers with, in Open311 ``GET requests/{id}`` and on
``/suivi/<reference>``.

* A later report's own routing (an update for most bodies, a first dispatch of the case for a
  few) adds those bodies to the case without counting a re-routing: the case's *generation* is
  its first report's routings after the first (a re-routing of the case's dispatch is told).
  ``join_bodies`` and ``case_generation`` are the notifier's (``veille.notify.cases``): the
  pages and the messages follow the same rules.
* A report split out of its case by a body (CaseSplit) answers with its own state from then on:
  its own dispatches and the body's dispatch of it (``received`` at the split). What it brought
  to the case before stays there (a body's answer to the case is the case's).
* The history a member shows: its own ``received`` and ``transmitted``, then the case's steps;
  a step of the case before the report joined is shown once, at the time it joined (the latest
  such step: the state the case was in).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Protocol, TypeVar

from veille.notify.cases import case_generation, join_bodies

__all__ = ["OWN_STEPS", "case_generation", "join_bodies", "member_history"]

OWN_STEPS = frozenset({"received", "transmitted"})


class Step(Protocol):
    """A step of a history (``open311_requests.Milestone``), a dataclass."""

    @property
    def at(self) -> datetime: ...

    @property
    def kind(self) -> str: ...


S = TypeVar("S", bound=Step)


def member_history(own: tuple[S, ...], case: tuple[S, ...], requested: datetime,
                   joined: datetime) -> tuple[S, ...]:
    """A member's history: its own first steps, then the case's (see the module)."""
    mine = tuple(m for m in own if m.kind in OWN_STEPS)
    before = [m for m in case if m.at < requested]
    after = tuple(m for m in case if m.at >= requested)
    carried = (replace(before[-1], at=max(joined, requested)),) if before else ()  # type: ignore[type-var]
    return mine + carried + after
