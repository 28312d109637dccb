"""Property: whatever the reports and their order, each is in exactly one case, and its routing
record names that case (hypothesis, in-memory replay of the grouping topic)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.grouping_helpers import decoded, incident, replay, route, router
from veille.grouping.cells import offset

# Near a corner of H3 cells (resolution 7) in Montveille: many reports meet several cells.
LAT, LON = 48.1500, -1.7000

reports = st.lists(st.tuples(st.floats(-900, 900), st.floats(-900, 900), st.floats(0, 150),
                             st.sampled_from(["flash_flood", "flood", "blocked_drain"])),
                   min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(reports)
def test_every_report_is_in_exactly_one_case(spec: list[tuple[float, float, float, str]]) -> None:
    r, rep = router(), replay()
    for i, (north, east, minutes, category) in enumerate(spec):
        point = offset(LAT, LON, north, east)
        rep.feed(route(r, incident(*point, minutes=minutes, n=i + 1, category=category), i))
    live = rep.cases()  # asserts no report is in two of the cases still held
    routed = decoded(rep.outputs, "t.routed")
    cases = {str(x["id"]): str(x["case_id"]) for x in routed}
    assert len(routed) == len(cases) == len(spec)  # one routing record each, every report
    assert set(cases) == {str(uuid.UUID(int=i + 1)) for i in range(len(spec))}
    for report, case in live.items():
        assert cases[report] == case  # the record names the case that holds it
    for case_id in set(cases.values()):
        assert cases[case_id] == case_id  # a case's id is its first report's, which is in it
