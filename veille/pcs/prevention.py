"""Prevention actions and their indicators (pure; see docs/indicators.md and docs/pcs.md).

A town records an **exploratory walk**, a **neighbourhood meeting** or a **mediation
session**: date, area, participants by kind as counts (never names). A walk can give rise to
reports, each an ordinary incident whose id the walk's ``prevention`` event lists
(``report_ids``; joined in the store by ``veille.reads.pcs``). The indicators:

* actions per quarter by kind (``2026-Q3``);
* participation per action: the mean number of participants of the actions of that quarter
  and kind; and per 1,000 inhabitants: the participants of the quarter over the population
  of the towns concerned (each town counted once), times 1,000;
* reports born from walks: how many, how many resolved, and the median processing time
  (report to resolution, hours) of the resolved ones.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from veille.schemas.models import InseeCode


class ActionKind(StrEnum):
    exploratory_walk = "exploratory_walk"
    neighbourhood_meeting = "neighbourhood_meeting"
    mediation_session = "mediation_session"


class ParticipantKind(StrEnum):
    residents = "residents"
    representatives = "representatives"
    police = "police"
    landlords = "landlords"
    associations = "associations"


class PreventionAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64)
    municipality: InseeCode
    kind: ActionKind
    date: date
    area: str = Field(min_length=1, max_length=300)
    participants: dict[ParticipantKind, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _counts(self) -> PreventionAction:
        if any(n < 0 or n > 100_000 for n in self.participants.values()):
            raise ValueError("participant counts are between 0 and 100000")
        return self

    @property
    def total(self) -> int:
        return sum(self.participants.values())


class WalkReport(BaseModel):
    """An incident born from an action: only its times (the incident itself is routed as usual);
    ``veille.reads.pcs.walk_report_times`` reads them from the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action_id: str
    reported_at: datetime
    resolved_at: datetime | None = None


def quarter(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def actions_per_quarter(actions: Iterable[PreventionAction]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a in actions:
        out[quarter(a.date)][a.kind.value] += 1
    return {q: dict(kinds) for q, kinds in sorted(out.items())}


def participation(actions: Iterable[PreventionAction],
                  population: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """Per quarter: mean participants per action (by kind) and per 1,000 inhabitants."""
    by_q: dict[str, list[PreventionAction]] = defaultdict(list)
    for a in actions:
        by_q[quarter(a.date)].append(a)
    out: dict[str, dict[str, float]] = {}
    for q, acts in sorted(by_q.items()):
        row: dict[str, float] = {}
        for kind in ActionKind:
            of_kind = [a.total for a in acts if a.kind is kind]
            if of_kind:
                row[f"per_action.{kind.value}"] = round(statistics.fmean(of_kind), 2)
        inhabitants = sum(population.get(t, 0) for t in {a.municipality for a in acts})
        if inhabitants:
            row["per_1000_inhabitants"] = round(1000 * sum(a.total for a in acts) / inhabitants, 2)
        out[q] = row
    return out


def walk_reports(actions: Iterable[PreventionAction],
                 reports: Iterable[WalkReport]) -> dict[str, float | int | None]:
    walks = {a.id for a in actions if a.kind is ActionKind.exploratory_walk}
    born = [r for r in reports if r.action_id in walks]
    hours = [(r.resolved_at - r.reported_at).total_seconds() / 3600 for r in born
             if r.resolved_at is not None]
    return {"reports": len(born), "resolved": len(hours),
            "median_processing_hours": round(statistics.median(hours), 2) if hours else None}


__all__ = ["ActionKind", "ParticipantKind", "PreventionAction", "WalkReport", "actions_per_quarter",
           "participation", "quarter", "walk_reports"]
