"""Prevention indicators on known data (values computed by hand in the comments)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from veille.pcs.prevention import (
    PreventionAction,
    WalkReport,
    actions_per_quarter,
    participation,
    walk_reports,
)

POP = {"35401": 12400, "35402": 5200}
T0 = datetime(2026, 5, 4, 10, tzinfo=UTC)


def act(id: str, town: str, kind: str, day: date, **participants: int) -> PreventionAction:
    return PreventionAction(id=id, municipality=town, kind=kind, date=day, area="centre",
                            participants=participants)


ACTIONS = [
    act("w1", "35401", "exploratory_walk", date(2026, 5, 4), residents=12, representatives=2, police=1),
    act("w2", "35402", "exploratory_walk", date(2026, 6, 30), residents=6, associations=2),
    act("m1", "35401", "neighbourhood_meeting", date(2026, 4, 1), residents=40, landlords=3),
    act("s1", "35401", "mediation_session", date(2026, 7, 1), residents=4),
]


def test_actions_per_quarter_by_kind() -> None:
    assert actions_per_quarter(ACTIONS) == {
        "2026-Q2": {"exploratory_walk": 2, "neighbourhood_meeting": 1},
        "2026-Q3": {"mediation_session": 1}}


def test_participation_per_action_and_per_thousand_inhabitants() -> None:
    got = participation(ACTIONS, POP)
    # Q2 walks: (15 + 8) / 2 = 11.5; meeting 43; all Q2: 66 participants over 17,600 inhabitants.
    assert got["2026-Q2"] == {"per_action.exploratory_walk": 11.5,
                              "per_action.neighbourhood_meeting": 43.0,
                              "per_1000_inhabitants": round(66 * 1000 / 17600, 2)}
    # Q3: 4 over Montveille's 12,400.
    assert got["2026-Q3"] == {"per_action.mediation_session": 4.0,
                              "per_1000_inhabitants": round(4000 / 12400, 2)}


def test_reports_born_from_walks_and_their_processing_time() -> None:
    reports = [WalkReport(action_id="w1", reported_at=T0, resolved_at=T0 + timedelta(hours=10)),
               WalkReport(action_id="w1", reported_at=T0, resolved_at=T0 + timedelta(hours=30)),
               WalkReport(action_id="w2", reported_at=T0, resolved_at=T0 + timedelta(hours=2)),
               WalkReport(action_id="w2", reported_at=T0),
               WalkReport(action_id="m1", reported_at=T0, resolved_at=T0)]  # not a walk
    assert walk_reports(ACTIONS, reports) == {"reports": 4, "resolved": 3,
                                              "median_processing_hours": 10.0}
    assert walk_reports(ACTIONS, []) == {"reports": 0, "resolved": 0, "median_processing_hours": None}


def test_names_are_not_accepted_only_counts() -> None:
    with pytest.raises(ValidationError):
        PreventionAction.model_validate({"id": "x", "municipality": "35401", "kind": "exploratory_walk",
                                         "date": "2026-05-04", "area": "c",
                                         "participants": {"Jean Dupont": 1}})
    with pytest.raises(ValidationError):
        act("x", "35401", "exploratory_walk", date(2026, 5, 4), residents=-1)
