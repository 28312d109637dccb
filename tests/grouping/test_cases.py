"""Grouping decisions without Kafka: the real router (grouping on) feeding the grouper through
the in-memory replay of ``<prefix>.grouping`` (veille/grouping/)."""

from __future__ import annotations

import uuid
from collections import Counter

from tests.grouping_helpers import TOPICS, boundary_point, decoded, incident, replay, route, router, territory
from veille.grouping.cells import cell_of, cells_within, decider_cell, offset
from veille.grouping.replay import Replay

LAT, LON = 48.1500, -1.7000  # Montveille, away from any boundary


def _run(incidents: list) -> tuple[Replay, list[dict], list[dict]]:
    r, rep = router(), replay()
    for i, inc in enumerate(incidents):
        rep.feed(route(r, inc, i))
    return rep, decoded(rep.outputs, "t.routed"), decoded(rep.outputs, "t.dispatch.")


def test_join_within_radius_and_window_not_beyond() -> None:
    near = offset(LAT, LON, 100, 0)
    far = offset(LAT, LON, 0, 200)
    incs = [incident(LAT, LON, n=1), incident(*near, minutes=30, n=2), incident(*far, minutes=31, n=3),
            incident(LAT, LON, minutes=61, n=4), incident(LAT, LON, minutes=59, n=5)]
    rep, routed, dispatches = _run(incs)
    case = {str(r["id"]): str(r["case_id"]) for r in routed}
    one = str(uuid.UUID(int=1))
    assert case[one] == one
    assert case[str(uuid.UUID(int=2))] == one and case[str(uuid.UUID(int=5))] == one
    assert case[str(uuid.UUID(int=3))] == str(uuid.UUID(int=3))  # 200 m away: its own case
    assert case[str(uuid.UUID(int=4))] == str(uuid.UUID(int=4))  # 61 min after the first: its own
    second = next(r for r in routed if r["id"] == uuid.UUID(int=2))
    assert second["dispatches"] == []
    assert {u["service"] for u in second["updates"]} == {"stormwater", "fire_rescue"}
    updates = [d for d in dispatches if d["event_id"] == str(uuid.UUID(int=2))]
    assert {d["case"]["role"] for d in updates} == {"update"}
    opened = {d["agency_id"]: d["id"] for d in dispatches if d["event_id"] == one}
    for d in updates:
        assert d["case"]["update_of"] == opened[d["agency_id"]] and d["case"]["reports"] == 2
    assert rep.events["opened"] == 3 and rep.events["joined"] == 2


def test_sensitive_and_without_coordinates_never_grouped() -> None:
    r = router()
    for inc in (incident(LAT, LON, category="burglary"), incident(None, None, municipality="35401"),
                incident(LAT, LON, category="assault")):
        outputs = route(r, inc)
        assert not [o for o in outputs if o.topic == TOPICS.grouping]
        routed = decoded(outputs, "t.routed")
        assert routed[0]["case_id"] is None and decoded(outputs, "t.dispatch.")
    grouped = route(r, incident(LAT, LON))
    assert [o.topic for o in grouped] == [TOPICS.grouping]
    assert [o.topic for o in route(router(grouping=False), incident(LAT, LON))] != [TOPICS.grouping]


def test_a_case_across_a_municipal_boundary() -> None:
    lat, lon = boundary_point("35401", "35403")
    west, east = offset(lat, lon, 0, -40), offset(lat, lon, 0, 40)
    assert territory().locate(west[1], west[0]) == ("35401",)
    assert territory().locate(east[1], east[0]) == ("35403",)
    incs = [incident(*west, n=1, municipality="35401"), incident(*east, minutes=2, n=2, municipality="35403"),
            incident(*east, minutes=3, n=3, municipality="35403")]
    _, routed, dispatches = _run(incs)
    assert {str(r["case_id"]) for r in routed} == {str(uuid.UUID(int=1))}
    last = [d for d in dispatches if d["event_id"] == str(uuid.UUID(int=3))]
    assert all(d["case"]["municipalities"] == ["35401", "35403"] for d in last)
    # Each body gets the case once (opened), every later report as an update
    opened = Counter(d["agency_id"] for d in dispatches if d["case"]["role"] == "opened")
    assert all(n == 1 for n in opened.values()), opened


def _border_pair() -> tuple[tuple[float, float], tuple[float, float]]:
    """Two points 120 m apart decided by different cells (near a corner of three H3 cells)."""
    res = territory().rules.grouping.cell_resolution
    lat0, lon0 = LAT, LON
    for i in range(400):
        a = offset(lat0, lon0, (i // 20) * 60.0, (i % 20) * 60.0)
        for angle in range(0, 360, 30):
            import math
            b = offset(*a, 120 * math.cos(math.radians(angle)), 120 * math.sin(math.radians(angle)))
            if decider_cell(*a, 150, res) != decider_cell(*b, 150, res) and territory().locate(b[1], b[0]):
                return a, b
    raise AssertionError("no pair found")


def test_a_case_across_an_h3_cell_border_is_one_case() -> None:
    a, b = _border_pair()
    res = territory().rules.grouping.cell_resolution
    assert cell_of(*a, res) != cell_of(*b, res) or decider_cell(*a, 150, res) != decider_cell(*b, 150, res)
    rep, routed, _ = _run([incident(*a, n=1), incident(*b, minutes=1, n=2)])
    assert {str(r["case_id"]) for r in routed} == {str(uuid.UUID(int=1))}
    assert rep.events["shadows"] >= 1 and rep.events["forwarded"] == 1
    assert len(rep.cases()) == 2
    # In the other order the other report opens it: still one case
    rep, routed, _ = _run([incident(*b, n=2), incident(*a, minutes=1, n=1)])
    assert {str(r["case_id"]) for r in routed} == {str(uuid.UUID(int=2))}


def test_reports_on_both_sides_of_a_cell_border_meet_in_one_decider() -> None:
    res = territory().rules.grouping.cell_resolution
    # Walk east until the cell changes: the border between two cells.
    lat, lon = LAT, LON
    start = cell_of(lat, lon, res)
    step = 0
    while cell_of(*offset(lat, lon, 0, step), res) == start:
        step += 10
    west, east = offset(lat, lon, 0, step - 60), offset(lat, lon, 0, step + 50)
    assert cell_of(*west, res) != cell_of(*east, res)
    for order in ((1, 2), (2, 1)):
        pts = {1: west, 2: east}
        _, routed, _ = _run([incident(*pts[n], minutes=i, n=n) for i, n in enumerate(order)])
        assert {str(r["case_id"]) for r in routed} == {str(uuid.UUID(int=order[0]))}
    assert len(cells_within(*west, 150, res)) >= 2


def test_same_input_same_order_same_cases() -> None:
    import random
    rng = random.Random(5)
    severities = ["minor", "moderate", "severe"]
    incs = [incident(*offset(LAT, LON, rng.uniform(-600, 600), rng.uniform(-600, 600)),
                     minutes=rng.uniform(0, 120), n=i + 1, severity=rng.choice(severities))
            for i in range(150)]
    first, second = _run(incs)[0], _run(incs)[0]
    def records(rep: Replay) -> list[tuple[str, bytes | None, bytes]]:
        return [(o.topic, o.key, o.value) for o in rep.outputs]

    assert records(first) == records(second)
    assert first.cases() == second.cases()


def test_severity_raised_at_severe_at_adds_the_escalation_targets() -> None:
    incs = [incident(*offset(LAT, LON, i, 0), minutes=i, n=i + 1) for i in range(21)]
    rep, routed, dispatches = _run(incs)
    assert {str(r["case_id"]) for r in routed} == {str(uuid.UUID(int=1))}
    monitoring = [d for d in dispatches if d["service"] == "monitoring_cell"]
    assert len(monitoring) == 1, monitoring  # the case goes to the monitoring cell once
    m = monitoring[0]
    assert m["event_id"] == str(uuid.UUID(int=1)) and m["case"]["role"] == "opened"
    assert m["case"]["reports"] == 20 and m["severity"] == "severe" and m["rule"] == "climate-severe"
    before = [d for d in dispatches if d["event_id"] == str(uuid.UUID(int=19))]
    after = [d for d in dispatches if d["event_id"] == str(uuid.UUID(int=21))]
    assert {d["case"]["severity"] for d in before} == {"moderate"}
    assert {d["case"]["severity"] for d in after} == {"severe"}
    assert rep.events["raised"] == 1
    # The case's first report is routed again with the monitoring cell among its dispatches (the
    # store and the acknowledgements know it), at the raising report's time, its severity the
    # reporter's; every other report keeps one routing record.
    firsts = [r for r in routed if r["id"] == uuid.UUID(int=1)]
    assert len(firsts) == 2 and len(routed) == 22
    opening, raised = firsts
    assert {t["agency_id"] for t in raised["dispatches"]} == \
        {t["agency_id"] for t in opening["dispatches"]} | {m["agency_id"]}
    assert raised["severity"] == opening["severity"] == "moderate" and raised["updates"] == []
    raiser = next(r for r in routed if r["id"] == uuid.UUID(int=20))
    assert raised["routed_at"] > opening["routed_at"] and raised["routed_at"] >= raiser["routed_at"]


def test_a_severe_report_raises_the_case_at_once() -> None:
    _, _, dispatches = _run([incident(LAT, LON, n=1),
                             incident(LAT, LON, minutes=1, n=2, severity="critical")])
    assert [d["case"]["severity"] for d in dispatches if d["service"] == "monitoring_cell"] == ["critical"]


def test_replayed_report_is_not_counted_twice() -> None:
    r, rep = router(), replay()
    incs = [incident(LAT, LON, n=1), incident(LAT, LON, minutes=1, n=2)]
    for inc in incs + incs:
        rep.feed(route(r, inc))  # the router's de-duplication is per batch here: both come twice
    assert rep.events["replayed"] == 2 and rep.events["joined"] == 1
    assert len(decoded(rep.outputs, "t.routed")) == 2
