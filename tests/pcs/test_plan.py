"""The PCS chain as data: pcs.yaml parsed, checked against the territory, matched to alerts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import shapely
import yaml

from veille.config import Settings
from veille.pcs.plan import PCS_FILE, check_plan, parse_plan, read_plan, representatives_reached
from veille.territory import TerritoryError, load_territory
from veille.territory.cli import _cmd_check

EXAMPLE = Path(Settings().territory_dir)


def _example() -> dict:
    return yaml.safe_load((EXAMPLE / PCS_FILE).read_text(encoding="utf-8"))


def test_example_plan_passes_the_checks() -> None:
    plan = read_plan(EXAMPLE / PCS_FILE)
    issues = check_plan(plan, load_territory(EXAMPLE))
    assert [i for i in issues if i.level == "error"] == []
    assert {"35401", "35402"} <= set(plan.municipalities)
    assert plan.find("r-35402-la-noe") is not None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["municipalities"]["35401"]["representatives"][0].update(substitutes=["nobody"]),
     "substitute 'nobody' is not a representative"),
    (lambda d: d["municipalities"]["35401"]["representatives"][0].update(
        area={"streets": ["a"], "hamlet": "x"}), "exactly one of"),
    (lambda d: d["municipalities"]["35402"]["representatives"][1].update(area={"hamlet": "x"}),
     "hamlet 'x' is not in"),
    (lambda d: d["municipalities"]["35401"]["representatives"][1].update(contact={}),
     "needs `email` or `sms`"),
    (lambda d: d["municipalities"]["35402"]["representatives"].append(
        {**d["municipalities"]["35401"]["representatives"][1], "substitutes": []}),
     "appear twice"),
    (lambda d: d["municipalities"]["35401"].update(ack_minutes=0), "ack_minutes"),
])
def test_bad_plans_are_refused_naming_the_field(edit, message) -> None:  # type: ignore[no-untyped-def]
    data = _example()
    edit(data)
    with pytest.raises(TerritoryError, match=message) as info:
        parse_plan(data, Path("pcs.yaml"))
    assert "pcs.yaml" in str(info.value)


def test_check_reports_unknown_towns_cells_and_areas_outside() -> None:
    data = _example()
    data["municipalities"]["99999"] = data["municipalities"].pop("35402")
    data["municipalities"]["35401"]["cell"]["agency"] = "sdis-35"
    data["municipalities"]["35401"]["representatives"][0]["area"] = {"polygon": {
        "type": "Polygon", "coordinates": [[[-1.80, 48.12], [-1.70, 48.12], [-1.70, 48.15],
                                            [-1.80, 48.15], [-1.80, 48.12]]]}}
    issues = check_plan(parse_plan(data, Path("pcs.yaml")), load_territory(EXAMPLE))
    codes = {(i.level, i.code) for i in issues}
    assert ("error", "pcs-unknown-municipality") in codes
    assert ("error", "pcs-unknown-cell") in codes
    assert ("warning", "pcs-area-outside") in codes


def test_territory_check_validates_the_plan_beside_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import argparse

    target = tmp_path / "t"
    shutil.copytree(EXAMPLE, target)
    assert _cmd_check(argparse.Namespace(directory=str(target), verbose=False)) == 0
    data = _example()
    data["municipalities"]["99999"] = {"cell": data["municipalities"]["35401"]["cell"]}
    (target / PCS_FILE).write_text(yaml.safe_dump(data), encoding="utf-8")
    assert _cmd_check(argparse.Namespace(directory=str(target), verbose=False)) == 1
    assert "pcs-unknown-municipality" in capsys.readouterr().out


def test_representatives_reached_by_an_alert_area() -> None:
    territory = load_territory(EXAMPLE)
    plan = read_plan(EXAMPLE / PCS_FILE)
    # A small box over Montveille's centre only: the centre's polygon and the street list
    # (which covers the whole town), not the building further north.
    box = shapely.box(-1.71, 48.13, -1.69, 48.14)
    assert [r.id for r in representatives_reached(plan, territory, "35401", box)] == \
        ["r-35401-centre", "r-35401-gare"]
    # The whole of Saint-Méen: both of its representatives, the hamlet included.
    whole = territory.municipalities["35402"].geometry
    assert [r.id for r in representatives_reached(plan, territory, "35402", whole)] == \
        ["r-35402-bourg", "r-35402-la-noe"]
    # An alert elsewhere reaches nobody there; a town without a chain, nobody.
    assert representatives_reached(plan, territory, "35402", box) == ()
    assert representatives_reached(plan, territory, "35406", whole) == ()
