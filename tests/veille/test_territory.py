"""Territory loading and jurisdiction checks (pure: no broker)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import shapely
import yaml

from veille.cli import main as cli_main
from veille.config import Settings
from veille.schemas.models import ServiceKind
from veille.territory import (
    AgencyLevel,
    Territory,
    TerritoryError,
    load_territory,
    read_territory,
    validate_territory,
)

EXAMPLE = Path(Settings().territory_dir)


@pytest.fixture(scope="module")
def territory() -> Territory:
    return load_territory(EXAMPLE)


def _copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "territory"
    shutil.copytree(EXAMPLE, target)
    return target


def _edit_jurisdiction(directory: Path, edit: object) -> None:
    path = directory / "jurisdiction.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def test_example_loads_and_validates_clean(territory: Territory) -> None:
    assert len(territory.municipalities) == 6
    assert all(code.startswith("35") for code in territory.municipalities)
    assert territory.name == "Communauté de communes du Val de Veille"
    issues = validate_territory(territory)
    assert [i for i in issues if i.level != "info"] == []
    # The syndicate's valley overlapping the town halls' stormwater is a declared precedence.
    resolved = [i for i in issues if i.code == "overlap_resolved"]
    assert {i.service for i in resolved} == {ServiceKind.stormwater}
    assert all("syndicat-eaux-veille has priority" in i.message for i in resolved)


def test_example_municipalities_tile_the_territory(territory: Territory) -> None:
    geoms = [m.geometry for m in territory.municipalities.values()]
    union = shapely.union_all(geoms)
    assert union.geom_type == "Polygon" and not union.interiors
    assert union.area == pytest.approx(sum(g.area for g in geoms))
    assert union.bounds == pytest.approx((-1.9, 48.0, -1.5, 48.2))


def test_example_agencies_and_cross_boundary_setup(territory: Territory) -> None:
    shared = territory.agencies["pm-plessis-tremel"]
    assert shared.home_municipality == "35405"
    assert territory.agencies["sdis35"].level == AgencyLevel.departmental
    police = {a.agency_id: a.municipalities for a in territory.areas_for(ServiceKind.municipal_police)}
    assert police["pm-plessis-tremel"] == ("35405", "35406")
    assert not any(a.home_municipality == "35406" and ServiceKind.municipal_police in a.services
                   for a in territory.agencies.values())


def test_load_is_cached_by_path(territory: Territory) -> None:
    assert load_territory(EXAMPLE) is territory
    assert load_territory(str(EXAMPLE)) is territory


def test_locate_interior_boundary_and_outside(territory: Territory) -> None:
    assert territory.locate(-1.70, 48.17) == ("35401",)
    # A vertex shared by four municipalities.
    assert territory.locate(-1.765, 48.104) == ("35401", "35402", "35404", "35405")
    assert territory.locate(-3.1, 47.2) == ()
    assert territory.locate(-1.5, 48.2) == ("35403",)  # the territory's corner is inside


def test_broken_territory_reports_gap_and_overlap_naming_places(tmp_path: Path) -> None:
    directory = _copy_example(tmp_path)

    def edit(data: dict) -> None:
        areas = data["service_areas"]
        # Nobody polices La Chapelle-du-Val any more...
        areas[:] = [a for a in areas if a["agency"] != "pm-35403"]
        # ...while Montveille's police also claims Saint-Méen-la-Rivière.
        areas.append({"agency": "pm-35401", "service": "municipal_police", "municipalities": ["35402"]})
        # Le Plessis-Gautier's stormwater outside the valley is nobody's.
        areas[:] = [a for a in areas if not (a["agency"] == "mairie-35405" and a["service"] == "stormwater")]

    _edit_jurisdiction(directory, edit)
    issues = validate_territory(read_territory(directory))
    errors = [i for i in issues if i.level == "error"]

    gaps = {i.service: i for i in errors if i.code == "gap"}
    assert set(gaps) == {ServiceKind.municipal_police, ServiceKind.stormwater}
    assert gaps[ServiceKind.municipal_police].municipalities == ("35403",)
    assert "35403 La Chapelle-du-Val (100%)" in gaps[ServiceKind.municipal_police].message
    # The valley still covers part of 35405: the gap is the rest of it.
    assert gaps[ServiceKind.stormwater].municipalities == ("35405",)
    assert "35405 Le Plessis-Gautier (91%)" in gaps[ServiceKind.stormwater].message

    overlaps = [i for i in errors if i.code == "overlap"]
    assert len(overlaps) == 1
    assert overlaps[0].agencies == ("pm-35401", "pm-35402")
    assert overlaps[0].municipalities == ("35402",)
    assert "35402 Saint-Méen-la-Rivière" in overlaps[0].message

    with pytest.raises(TerritoryError) as exc:
        load_territory(directory)
    assert "no agency covers 35403" in str(exc.value)
    assert {i.code for i in exc.value.issues} == {"gap", "overlap"}


def test_overlap_policy_and_priority_make_overlaps_acceptable(tmp_path: Path) -> None:
    directory = _copy_example(tmp_path)

    def edit(data: dict) -> None:
        data["service_areas"].append({"agency": "pm-35401", "service": "municipal_police",
                                      "municipalities": ["35402"]})
        data["policies"] = {"municipal_police": {"overlaps": "allow"}}

    _edit_jurisdiction(directory, edit)
    issues = validate_territory(read_territory(directory))
    overlap = [i for i in issues if i.code == "overlap"]
    assert [i.level for i in overlap] == ["warning"]
    assert not [i for i in issues if i.level == "error"]

    def prioritise(data: dict) -> None:
        data["policies"] = {}
        data["service_areas"][-1]["priority"] = 5

    _edit_jurisdiction(directory, prioritise)
    issues = validate_territory(read_territory(directory))
    assert not [i for i in issues if i.level == "error"]
    assert any(i.code == "overlap_resolved" and "pm-35401 has priority" in i.message for i in issues)


def test_unknown_references_and_services_not_provided(tmp_path: Path) -> None:
    directory = _copy_example(tmp_path)

    def edit(data: dict) -> None:
        data["service_areas"] += [
            {"agency": "pompiers-fantomes", "service": "fire_rescue", "all": True},
            {"agency": "pm-35401", "service": "stormwater", "municipalities": ["35401"]},
            {"agency": "pm-35402", "service": "municipal_police", "municipalities": ["35999"]},
        ]
        # (a municipal agency: departmental/state ones may not have a home at all)
        (police,) = [a for a in data["agencies"] if a["id"] == "pm-35403"]
        police["home_municipality"] = "35888"

    _edit_jurisdiction(directory, edit)
    issues = validate_territory(read_territory(directory))
    by_code = {i.code: i for i in issues if i.level == "error"}
    assert "'pompiers-fantomes' is not declared" in by_code["unknown_agency"].message
    assert "pm-35401 does not provide stormwater" in by_code["service_not_provided"].message
    unknown = [i for i in issues if i.code == "unknown_municipality"]
    assert {m for i in unknown for m in i.municipalities} == {"35999", "35888"}
    # Unusable areas take no part in coverage: no phantom overlap with sdis35.
    assert not [i for i in issues if i.code == "overlap"]


def test_file_errors_name_file_and_field(tmp_path: Path) -> None:
    directory = _copy_example(tmp_path)

    def edit(data: dict) -> None:
        data["agencies"][2]["id"] = "Syndicat Eaux"
        data["service_areas"][0]["all"] = False

    _edit_jurisdiction(directory, edit)
    with pytest.raises(TerritoryError) as exc:
        read_territory(directory)
    message = str(exc.value)
    assert "jurisdiction.yaml: agencies[2].id: String should match pattern" in message
    assert "jurisdiction.yaml: service_areas[0]: Value error, give exactly one of" in message

    shutil.copy(EXAMPLE / "jurisdiction.yaml", directory / "jurisdiction.yaml")
    (directory / "routing.yaml").write_text("incident_rules:\n  - {id: x, categories: [teleportation],"
                                            " services: [fire_rescue]}\n")
    with pytest.raises(TerritoryError, match=r"routing\.yaml: incident_rules\[0\]\.categories\[0\]"):
        read_territory(directory)


def test_cli_check_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["territory", "check", str(EXAMPLE)]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    assert cli_main(["territory", "show", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "pm-plessis-tremel" in out and "35406  Trémel-en-Lande" in out

    directory = _copy_example(tmp_path)
    _edit_jurisdiction(directory, lambda d: d["service_areas"].pop(0))  # drop the SDIS
    assert cli_main(["territory", "check", str(directory)]) == 1
    assert "ERROR   gap: fire_rescue: no agency covers 35401 Montveille (100%)" in capsys.readouterr().out
    assert cli_main(["territory", "check", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize(("agency", "level"), [("sdis35", "departmental"), ("ars-dd35", "state")])
def test_departmental_and_state_agencies_cannot_have_a_home(tmp_path: Path, agency: str, level: str) -> None:
    # Issue 7, bug 1: sdis35 with home 35401 was counted cross-boundary everywhere but there.
    directory = _copy_example(tmp_path)

    def edit(data: dict) -> None:
        (spec,) = [a for a in data["agencies"] if a["id"] == agency]
        spec["home_municipality"] = "35401"

    _edit_jurisdiction(directory, edit)
    with pytest.raises(TerritoryError) as exc:
        read_territory(directory)
    message = str(exc.value)
    assert "jurisdiction.yaml: agencies[" in message
    assert f"agency {agency}: a {level} agency cannot have a home_municipality" in message
    assert cli_main(["territory", "check", str(directory)]) == 2


def test_check_warns_only_about_what_is_really_unroutable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Drought routed only by the severe escalation: not "unroutable", only below severe.
    directory = _copy_example(tmp_path)
    routing = directory / "routing.yaml"
    data = yaml.safe_load(routing.read_text())
    data["incident_rules"] = [r for r in data["incident_rules"] if r["id"] != "water-shortage"]
    routing.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    issues = [i for i in validate_territory(read_territory(directory)) if i.code == "no_rule"]
    assert [i.message for i in issues] == [
        "no incident rule for drought below severity severe (minor, moderate; routed from severe up "
        "by climate-severe): unroutable below that severity"]
    # A category no rule at all names is unroutable at every severity.
    data["escalations"] = [e for e in data["escalations"] if e["id"] != "climate-severe"]
    routing.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    issues = [i for i in validate_territory(read_territory(directory)) if i.code == "no_rule"]
    assert [i.message for i in issues] == [
        "no incident rule or escalation for categories drought: they are unroutable at every severity"]
    assert cli_main(["territory", "check", str(directory)]) == 0
    assert "unroutable at every severity" in capsys.readouterr().out
    # And the example itself has no such warning.
    assert not [i for i in validate_territory(read_territory(EXAMPLE)) if i.code == "no_rule"]


def test_escalation_alone_routes_the_category(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from veille.schemas.models import Channel, Incident, IncidentCategory, Severity
    from veille.territory.routing import NO_RULE, route_incident

    directory = _copy_example(tmp_path)
    routing = directory / "routing.yaml"
    data = yaml.safe_load(routing.read_text())
    data["incident_rules"] = [r for r in data["incident_rules"] if r["id"] != "water-shortage"]
    routing.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    t = read_territory(directory)
    now = datetime.now(UTC)

    def drought(severity: Severity) -> Incident:
        return Incident(id=uuid.uuid4(), municipality="35401", category=IncidentCategory.drought,
                        severity=severity, occurred_at=now, reported_at=now, channel=Channel.phone,
                        address="place de la Mairie")

    assert route_incident(drought(Severity.severe), t).agencies == ("cellule-veille",)
    assert route_incident(drought(Severity.moderate), t).unroutable == NO_RULE
