"""The checks of ``routing.yaml``'s ``grouping:`` section (docs/grouping.md), run by
``veille territory check`` with the territory's other checks (:mod:`.checks`)."""

from __future__ import annotations

import h3

from veille.territory.model import SENSITIVE_CATEGORIES, Grouping, Issue

# The repartition key's cells must be much larger than any grouping radius: a case is then
# seen by its own cell and at most the few neighbours it overlaps, never by a ring of cells.
MIN_EDGE_TO_RADIUS = 5.0


def grouping_issues(grouping: Grouping) -> list[Issue]:
    issues: list[Issue] = []
    owner: dict[str, str] = {}
    for rule in grouping.rules:
        sensitive = sorted(c.value for c in rule.categories if c in SENSITIVE_CATEGORIES)
        if sensitive:
            issues.append(Issue("error", "grouping_sensitive",
                                f"grouping rule {rule.id}: {', '.join(sensitive)} is sensitive and is "
                                "never grouped (each report is a person's own matter)"))
        if rule.radius_m <= 0 or rule.window_minutes <= 0:
            issues.append(Issue("error", "grouping_bounds",
                                f"grouping rule {rule.id}: radius_m and window_minutes must be positive "
                                f"(got {rule.radius_m} m, {rule.window_minutes} min)"))
        if rule.severe_at is not None and rule.severe_at < 2:
            issues.append(Issue("error", "grouping_bounds",
                                f"grouping rule {rule.id}: severe_at must be at least 2 reports"))
        for category in rule.categories:
            first = owner.setdefault(category.value, rule.id)
            if first != rule.id:
                issues.append(Issue("error", "grouping_duplicate_category",
                                    f"category {category.value} is in grouping rules {first} and {rule.id}"))
    largest = grouping.largest_radius_m
    if largest > 0:
        edge = h3.average_hexagon_edge_length(grouping.cell_resolution, unit="m")
        if edge < MIN_EDGE_TO_RADIUS * largest:
            issues.append(Issue("error", "grouping_cells_too_small",
                                f"grouping cell_resolution {grouping.cell_resolution}: cells' edges "
                                f"(~{edge:.0f} m) must be at least {MIN_EDGE_TO_RADIUS:g} times the largest "
                                f"radius ({largest:g} m): choose a lower resolution"))
    return issues


__all__ = ["MIN_EDGE_TO_RADIUS", "grouping_issues"]
