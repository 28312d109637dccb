"""routing.yaml's grouping section: loaded, and refused by `veille territory check` when unsafe."""

from __future__ import annotations

from tests.grouping_helpers import territory
from veille.schemas.models import IncidentCategory
from veille.territory.grouping_checks import grouping_issues
from veille.territory.model import Grouping, GroupingRule


def _codes(g: Grouping) -> list[str]:
    return [i.code for i in grouping_issues(g) if i.level == "error"]


def test_example_territory_rules_are_loaded_and_valid() -> None:
    g = territory().rules.grouping
    rule = g.rule_for(IncidentCategory.flash_flood)
    assert rule is not None and rule.radius_m == 150 and rule.window_minutes == 60 and rule.severe_at == 20
    assert g.rule_for(IncidentCategory.burglary) is None and g.rule_for(IncidentCategory.graffiti) is None
    assert _codes(g) == []


def test_sensitive_categories_are_never_grouped_even_if_named() -> None:
    g = Grouping(rules=(GroupingRule(id="bad", categories=(IncidentCategory.assault, IncidentCategory.flood),
                                     radius_m=50, window_minutes=10),))
    assert g.rule_for(IncidentCategory.assault) is None
    assert _codes(g) == ["grouping_sensitive"]


def test_check_refuses_duplicates_bounds_and_small_cells() -> None:
    flood = (IncidentCategory.flood,)
    dup = Grouping(rules=(GroupingRule(id="a", categories=flood, radius_m=50, window_minutes=10),
                          GroupingRule(id="b", categories=flood, radius_m=50, window_minutes=10)))
    assert _codes(dup) == ["grouping_duplicate_category"]
    bounds = Grouping(rules=(GroupingRule(id="a", categories=(IncidentCategory.flood,), radius_m=0,
                                          window_minutes=-1),))
    assert _codes(bounds) == ["grouping_bounds"]
    small = Grouping(cell_resolution=10, rules=(GroupingRule(id="a", categories=(IncidentCategory.flood,),
                                                             radius_m=150, window_minutes=10),))
    assert _codes(small) == ["grouping_cells_too_small"]


def test_territory_check_reports_the_grouping_errors() -> None:
    import dataclasses

    from veille.territory.checks import validate_territory

    t = territory()
    bad = Grouping(cell_resolution=7, rules=(GroupingRule(id="x", categories=(IncidentCategory.burglary,),
                                                          radius_m=100, window_minutes=30),))
    broken = dataclasses.replace(t, rules=t.rules.model_copy(update={"grouping": bad}))
    errors = [i for i in validate_territory(broken) if i.level == "error"]
    assert [i.code for i in errors] == ["grouping_sensitive"]
    assert not [i for i in validate_territory(t) if i.code.startswith("grouping")]
