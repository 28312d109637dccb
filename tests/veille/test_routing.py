"""Routing on the example territory (pure: no broker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import shapely
from pyproj import Geod

from veille.config import Settings
from veille.schemas.models import (
    Alert,
    AlertArea,
    AlertInfo,
    CapCategory,
    CapCertainty,
    CapMsgType,
    CapScope,
    CapSeverity,
    CapStatus,
    CapUrgency,
    Channel,
    Circle,
    GeoPoint,
    Incident,
    IncidentCategory,
    KeyValue,
    ServiceKind,
    Severity,
)
from veille.territory import Territory, load_territory
from veille.territory.alert_area import circle_polygon
from veille.territory.routing import (
    LARGEST_SHARE_SUFFIX,
    NO_AGENCY,
    NO_RULE,
    OUTSIDE_TERRITORY,
    UNKNOWN_MUNICIPALITY,
    RoutingDecision,
    cross_boundary,
    route_alert,
    route_incident,
)

NOW = datetime.now(UTC) - timedelta(minutes=5)
C = IncidentCategory

# Points whose premise each test re-checks against the GeoJSON.
MONTVEILLE = (48.17, -1.70)  # 35401, north of the valley
CHAPELLE = (48.16, -1.57)  # 35403
PLESSIS = (48.03, -1.70)  # 35405, south of the valley
TREMEL = (48.02, -1.55)  # 35406, south of the valley
BREAL = (48.03, -1.85)  # 35404, no valley there
VALLEY_SAINT_MEEN = (48.145, -1.86)  # 35402, in the syndicate's valley
VALLEY_VERTEX = (48.11054, -1.69684)  # a vertex of the valley polygon, in 35401
EDGE_VERTEX = (48.135, -1.749)  # shared by 35401 (east) and 35402 (west) only
FOUR_TOWNS_VERTEX = (48.104, -1.765)  # shared by 35401, 35402, 35404, 35405


@pytest.fixture(scope="module")
def territory() -> Territory:
    return load_territory(Settings().territory_dir)


@pytest.fixture(scope="module")
def valley(territory: Territory) -> shapely.Geometry:
    (area,) = [a for a in territory.service_areas if a.agency_id == "syndicat-eaux-veille"]
    return area.geometry


def incident(municipality: str, category: IncidentCategory, point: tuple[float, float] | None = None,
             severity: Severity = Severity.moderate) -> Incident:
    return Incident(
        id=uuid.uuid4(), municipality=municipality, category=category, severity=severity,
        location=GeoPoint(lat=point[0], lon=point[1]) if point else None,
        address=None if point else "3 rue de la Mairie",
        occurred_at=NOW, reported_at=NOW, channel=Channel.app if point else Channel.phone,
    )


def targets(decision: RoutingDecision) -> list[tuple[str, str, str, bool]]:
    assert decision.routable, decision.reason
    return [(t.agency_id, t.service.value, t.rule, t.cross_boundary) for t in decision.targets]


def test_premises_of_the_fixture_points(territory: Territory, valley: shapely.Geometry) -> None:
    expected = {MONTVEILLE: "35401", CHAPELLE: "35403", PLESSIS: "35405", TREMEL: "35406",
                BREAL: "35404", VALLEY_SAINT_MEEN: "35402", VALLEY_VERTEX: "35401"}
    for (lat, lon), code in expected.items():
        assert territory.locate(lon, lat) == (code,)
        in_valley = shapely.intersects_xy(valley, lon, lat)
        assert in_valley == ((lat, lon) in (VALLEY_SAINT_MEEN, VALLEY_VERTEX)), (lat, lon)
    assert shapely.touches(valley, shapely.Point(VALLEY_VERTEX[1], VALLEY_VERTEX[0]))
    assert territory.locate(EDGE_VERTEX[1], EDGE_VERTEX[0]) == ("35401", "35402")


def test_burglary_goes_to_the_towns_police(territory: Territory) -> None:
    decision = route_incident(incident("35403", C.burglary, CHAPELLE), territory)
    assert targets(decision) == [("pm-35403", "municipal_police", "security", False)]
    assert decision.municipalities == ("35403",)
    assert decision.rules == ("security",)


def test_towns_sharing_a_police_force(territory: Territory) -> None:
    home = route_incident(incident("35405", C.theft, PLESSIS), territory)
    other = route_incident(incident("35406", C.theft, TREMEL), territory)
    assert targets(home) == [("pm-plessis-tremel", "municipal_police", "security", False)]
    assert targets(other) == [("pm-plessis-tremel", "municipal_police", "security", True)]


def test_flood_in_the_syndicate_valley(territory: Territory) -> None:
    decision = route_incident(incident("35402", C.flood, VALLEY_SAINT_MEEN), territory)
    assert targets(decision) == [
        ("syndicat-eaux-veille", "stormwater", "flooding", True),
        ("sdis35", "fire_rescue", "flooding", False),
    ]


def test_flood_outside_the_valley_goes_to_the_town_hall(territory: Territory) -> None:
    decision = route_incident(incident("35404", C.flood, BREAL), territory)
    assert targets(decision) == [
        ("mairie-35404", "stormwater", "flooding", False),
        ("sdis35", "fire_rescue", "flooding", False),
    ]
    # Same town crossed by the valley, but north of it.
    decision = route_incident(incident("35401", C.blocked_drain, MONTVEILLE), territory)
    assert targets(decision) == [("mairie-35401", "stormwater", "drainage", False)]


def test_point_on_the_edge_of_a_service_area_is_inside(territory: Territory) -> None:
    decision = route_incident(incident("35401", C.blocked_drain, VALLEY_VERTEX), territory)
    assert targets(decision) == [("syndicat-eaux-veille", "stormwater", "drainage", True)]


def test_severe_climate_escalates_to_the_monitoring_cell(territory: Territory) -> None:
    moderate = route_incident(incident("35404", C.storm, BREAL, Severity.moderate), territory)
    severe = route_incident(incident("35404", C.storm, BREAL, Severity.severe), territory)
    critical = route_incident(incident("35402", C.flash_flood, VALLEY_SAINT_MEEN, Severity.critical),
                              territory)
    assert targets(moderate) == [("sdis35", "fire_rescue", "ground-and-wind", False),
                                 ("mairie-35404", "public_works", "ground-and-wind", False)]
    cell = ("cellule-veille", "monitoring_cell", "climate-severe", True)
    assert targets(severe) == [*targets(moderate), cell]
    assert cell in targets(critical)
    # Non-climate categories never escalate to the cell.
    assert "cellule-veille" not in route_incident(
        incident("35401", C.assault, MONTVEILLE, Severity.critical), territory).agencies


def test_public_works_mediation_and_health(territory: Territory) -> None:
    assert targets(route_incident(incident("35403", C.broken_streetlight, CHAPELLE), territory)) == [
        ("mairie-35403", "public_works", "public-space", False)]
    assert targets(route_incident(incident("35405", C.neighbour_dispute, PLESSIS), territory)) == [
        ("cc-mediation", "social_mediation", "neighbourhood", True)]
    assert targets(route_incident(incident("35401", C.heatwave, MONTVEILLE), territory)) == [
        ("ars-dd35", "health", "heat", False)]
    heat = targets(route_incident(incident("35401", C.heatwave, MONTVEILLE, Severity.critical), territory))
    assert heat == [("ars-dd35", "health", "heat", False),
                    ("cellule-veille", "monitoring_cell", "climate-severe", True),
                    ("sdis35", "fire_rescue", "heat-critical", False)]


def test_without_coordinates_route_by_municipality(territory: Territory) -> None:
    decision = route_incident(incident("35406", C.burglary), territory)
    assert targets(decision) == [("pm-plessis-tremel", "municipal_police", "security", True)]
    assert decision.municipalities == ("35406",)
    # The valley polygon covers part of Saint-Méen: without a point, the town hall (whole town) acts.
    decision = route_incident(incident("35402", C.blocked_drain), territory)
    assert targets(decision) == [("mairie-35402", "stormwater", "drainage", False)]


@pytest.mark.parametrize(("declared", "expected"), [("35401", "35401"), ("35402", "35402"),
                                                    ("35403", "35401"), ("35406", "35401")])
def test_point_on_a_shared_boundary(territory: Territory, declared: str, expected: str) -> None:
    decision = route_incident(incident(declared, C.burglary, EDGE_VERTEX), territory)
    assert decision.municipalities == (expected,)
    assert decision.agencies == (f"pm-{expected}",)
    assert decision.relocated == (declared != expected)


@pytest.mark.parametrize(("declared", "expected"), [("35405", "35405"), ("35404", "35404"),
                                                    ("35406", "35401")])
def test_point_where_four_towns_meet(territory: Territory, declared: str, expected: str) -> None:
    decision = route_incident(incident(declared, C.damaged_road, FOUR_TOWNS_VERTEX), territory)
    assert targets(decision) == [(f"mairie-{expected}", "public_works", "public-space", False)]


@pytest.mark.parametrize("declared", ["35401", "35402"])
def test_points_just_inside_each_side(territory: Territory, declared: str) -> None:
    lat, lon = EDGE_VERTEX
    east = route_incident(incident(declared, C.burglary, (lat, lon + 1e-6)), territory)
    west = route_incident(incident(declared, C.burglary, (lat, lon - 1e-6)), territory)
    # The point wins over the declared municipality, which only flags the relocation.
    assert (east.agencies, east.relocated) == (("pm-35401",), declared != "35401")
    assert (west.agencies, west.relocated) == (("pm-35402",), declared != "35402")


def test_point_outside_the_territory(territory: Territory) -> None:
    decision = route_incident(incident("35401", C.burglary, (47.2, -3.1)), territory)
    assert not decision.routable
    assert decision.unroutable == OUTSIDE_TERRITORY
    assert decision.reason == "point 47.2,-3.1 is outside the territory"
    assert decision.targets == ()


def test_unknown_municipality(territory: Territory) -> None:
    decision = route_incident(incident("99999", C.burglary), territory)
    assert (decision.unroutable, decision.reason) == (UNKNOWN_MUNICIPALITY,
                                                    "municipality 99999 is not in the territory")


def test_category_without_rule_and_service_without_agency(territory: Territory) -> None:
    import dataclasses

    from veille.territory import RoutingRules

    rules = RoutingRules.model_validate({"incident_rules": [
        {"id": "police", "categories": ["burglary"], "services": ["municipal_police", "health"]},
        {"id": "heat", "categories": ["heatwave"], "services": ["health"]}]})
    partial = dataclasses.replace(territory, rules=rules,
                                  service_areas=tuple(a for a in territory.service_areas
                                                      if a.service != ServiceKind.health))
    assert route_incident(incident("35401", C.theft, MONTVEILLE), partial).unroutable == NO_RULE
    decision = route_incident(incident("35401", C.burglary, MONTVEILLE), partial)
    assert targets(decision) == [("pm-35401", "municipal_police", "police", False)]
    assert decision.warnings == ("no health agency serves 35401",)
    nobody = route_incident(incident("35401", C.heatwave, MONTVEILLE), partial)
    assert (nobody.unroutable, nobody.reason) == (NO_AGENCY, "no health agency serves 35401")


def test_decisions_are_deterministic_and_cached(territory: Territory) -> None:
    first = route_incident(incident("35402", C.flood, VALLEY_SAINT_MEEN, Severity.severe), territory)
    again = route_incident(incident("35402", C.flood, (48.146, -1.861), Severity.severe), territory)
    assert first is again  # same place, same services: the decision is shared


# --------------------------------------------------------------------------- alerts


def alert(*areas: AlertArea, category: CapCategory = CapCategory.Met, code: str | None = None) -> Alert:
    return Alert(
        identifier=f"test-{uuid.uuid4()}", sender="test@prefecture.example", sent=NOW,
        status=CapStatus.Actual, msg_type=CapMsgType.Alert, scope=CapScope.Public,
        infos=[AlertInfo(
            category=[category], event="test",
            event_codes=[KeyValue(value_name="veille", value=code)] if code else [],
            urgency=CapUrgency.Immediate, severity=CapSeverity.Severe, certainty=CapCertainty.Likely,
            areas=list(areas))],
    )


def ring(geom: shapely.Geometry) -> list[GeoPoint]:
    return [GeoPoint(lat=y, lon=x) for x, y in geom.exterior.coords]


def pcs(codes: list[str]) -> list[tuple[str, str, str, bool]]:
    return [(f"mairie-{c}", "municipal_safeguard", "pcs-chain", False) for c in codes]


def test_alert_by_polygon_fans_out_along_the_valley(territory: Territory, valley: shapely.Geometry) -> None:
    decision = route_alert(alert(AlertArea(area_desc="Vallée", polygons=[ring(valley)]),
                                 code="flash_flood"), territory)
    assert decision.municipalities == ("35401", "35402", "35405", "35406")
    # An alert is a broadcast: the syndicate AND every town hall whose stormwater area meets
    # the valley are informed (the syndicate's priority only decides incidents), then the PCS.
    assert targets(decision) == [
        ("syndicat-eaux-veille", "stormwater", "alert-flood", True),
        *[(f"mairie-{c}", "stormwater", "alert-flood", False) for c in ("35406", "35401", "35402", "35405")],
        ("sdis35", "fire_rescue", "alert-flood", False),
        ("cellule-veille", "monitoring_cell", "alert-flood", True),
        *pcs(["35401", "35402", "35405", "35406"]),
    ]


def test_alert_by_circle(territory: Territory) -> None:
    lat, lon = BREAL
    decision = route_alert(alert(AlertArea(area_desc="Bréal", circles=[
        Circle(center=GeoPoint(lat=lat, lon=lon), radius_km=2)]), category=CapCategory.Met,
        code="heatwave"), territory)
    assert decision.municipalities == ("35404",)
    assert targets(decision) == [("ars-dd35", "health", "alert-heat", False),
                                 ("cellule-veille", "monitoring_cell", "alert-heat", True),
                                 *pcs(["35404"])]
    lat, lon = FOUR_TOWNS_VERTEX
    decision = route_alert(alert(AlertArea(area_desc="Carrefour", circles=[
        Circle(center=GeoPoint(lat=lat, lon=lon), radius_km=1)]), category=CapCategory.Fire), territory)
    assert decision.municipalities == ("35401", "35402", "35404", "35405")
    assert targets(decision)[:2] == [("sdis35", "fire_rescue", "alert-fire", False),
                                     ("cellule-veille", "monitoring_cell", "alert-fire", True)]
    assert targets(decision)[2:] == pcs(["35401", "35402", "35404", "35405"])


# Where French municipalities are: south (43N), north (51N), La Réunion, Martinique.
CIRCLE_CENTRES = [(43.0, 3.0), (51.0, 2.3), (-21.0, 55.5), (14.6, -61.0)]
CIRCLE_RADII_KM = [0.05, 1.0, 20.0, 100.0, 300.0]


@pytest.mark.parametrize(("lat", "lon"), CIRCLE_CENTRES)
@pytest.mark.parametrize("radius_km", CIRCLE_RADII_KM)
def test_circle_is_geodesic_within_a_thousandth_of_the_radius(lat: float, lon: float,
                                                              radius_km: float) -> None:
    geod = Geod(ellps="WGS84")
    ring = list(circle_polygon(lat, lon, radius_km).exterior.coords)[:-1]
    assert len(ring) >= 64
    # Every vertex, and the middle of every edge (as the polygon draws it: straight in
    # lon/lat), is at the radius from the centre, measured on the ellipsoid, within 0.1 %.
    points = [*ring, *[((x1 + x2) / 2, (y1 + y2) / 2)
                       for (x1, y1), (x2, y2) in zip(ring, [*ring[1:], ring[0]], strict=True)]]
    for x, y in points:
        _, _, metres = geod.inv(lon, lat, x, y)
        assert metres / 1000 == pytest.approx(radius_km, rel=1e-3), (x, y)


def test_circle_is_round_on_the_ground_not_in_degrees() -> None:
    # The old equirectangular circle was 0.56 % too tall at 48N: north and east reaches agree now.
    geod = Geod(ellps="WGS84")
    minx, miny, maxx, maxy = circle_polygon(48.0, -1.7, 10.0).bounds
    assert geod.inv(-1.7, miny, -1.7, maxy)[2] == pytest.approx(20_000, rel=1e-3)
    assert geod.inv(minx, 48.0, maxx, 48.0)[2] == pytest.approx(20_000, rel=1e-3)


def test_a_100_m_flood_circle_reaches_every_body_whose_area_it_meets(territory: Territory,
                                                                   valley: shapely.Geometry) -> None:
    # Rule B: an alert is a broadcast. The circle is in Saint-Méen, inside the valley: the
    # syndicate (priority 10) AND the town hall's stormwater service (whole town) are informed.
    lat, lon = VALLEY_SAINT_MEEN
    circle = circle_polygon(lat, lon, 0.1)
    assert valley.contains(circle) and territory.municipalities["35402"].geometry.contains(circle)
    decision = route_alert(alert(AlertArea(area_desc="Crue locale", circles=[
        Circle(center=GeoPoint(lat=lat, lon=lon), radius_km=0.1)]), code="flood"), territory)
    assert targets(decision) == [
        ("syndicat-eaux-veille", "stormwater", "alert-flood", True),
        ("mairie-35402", "stormwater", "alert-flood", False),
        ("sdis35", "fire_rescue", "alert-flood", False),
        ("cellule-veille", "monitoring_cell", "alert-flood", True),
        *pcs(["35402"]),
    ]
    # The incident at the same place still goes to the syndicate alone (priority).
    assert route_incident(incident("35402", C.flood, VALLEY_SAINT_MEEN), territory).agencies == (
        "syndicat-eaux-veille", "sdis35")


def test_alert_reaches_both_bodies_with_identical_areas(territory: Territory) -> None:
    import dataclasses

    from veille.territory import Agency, AgencyLevel

    # A second police force with exactly pm-35403's area and priority: it loses every incident
    # tie (lowest id wins) but, as a broadcast, an alert on the town reaches both.
    twin = Agency("pm-zz-35403", "Police bis", AgencyLevel.municipal,
                  frozenset({ServiceKind.municipal_police}), "35403")
    (own,) = [a for a in territory.service_areas if a.agency_id == "pm-35403"]
    twin_area = dataclasses.replace(own, index=len(territory.service_areas), agency_id=twin.id)
    both = dataclasses.replace(territory, agencies={**territory.agencies, twin.id: twin},
                               service_areas=(*territory.service_areas, twin_area))
    assert route_incident(incident("35403", C.burglary, CHAPELLE), both).agencies == ("pm-35403",)
    decision = route_alert(alert(AlertArea(area_desc="La Chapelle", geocodes=[
        KeyValue(value_name="INSEE", value="35403")]), category=CapCategory.Safety), both)
    police = [t for t in targets(decision) if t[1] == "municipal_police"]
    assert police == [("pm-35403", "municipal_police", "alert-safety", False),
                      ("pm-zz-35403", "municipal_police", "alert-safety", False)]


# --------------------------------------------------------------------------- regressions of issue 7


def test_departmental_agency_is_never_cross_boundary_even_with_a_home(territory: Territory) -> None:
    import dataclasses

    # Bug 1: the loader refuses the home (tests/veille/test_territory.py); a hand-built territory
    # that slips one through is still never counted: the level is checked first.
    sdis = dataclasses.replace(territory.agencies["sdis35"], home_municipality="35401")
    homed = dataclasses.replace(territory, agencies={**territory.agencies, "sdis35": sdis})
    assert cross_boundary(sdis, ["35403"]) is False
    decision = route_incident(incident("35403", C.wildfire, CHAPELLE), homed)
    assert targets(decision) == [("sdis35", "fire_rescue", "fire", False)]
    ars = dataclasses.replace(territory.agencies["ars-dd35"], home_municipality="35402")
    assert cross_boundary(ars, ["35401"]) is False


def safety_alert(*codes: str) -> Alert:
    """One CAP alert, one Safety info per INSEE code, in the given order."""
    infos = [alert(AlertArea(area_desc=c, geocodes=[KeyValue(value_name="INSEE", value=c)]),
                   category=CapCategory.Safety).infos[0] for c in codes]
    return alert(*infos[0].areas).model_copy(update={"infos": infos})


def test_multi_info_alert_flag_does_not_depend_on_info_order(territory: Territory) -> None:
    # Bug 2: info 1 on 35406, info 2 on 35405: the shared police (home 35405) was flagged
    # cross-boundary from the first info only; swapped, it was not.
    forward = route_alert(safety_alert("35406", "35405"), territory)
    backward = route_alert(safety_alert("35405", "35406"), territory)
    shared = ("pm-plessis-tremel", "municipal_police", "alert-safety", False)
    assert shared in targets(forward) and shared in targets(backward)
    assert sorted(targets(forward)) == sorted(targets(backward))
    assert forward.targets == backward.targets  # same order too
    # Only 35406 affected: the shared police acts outside its home town.
    assert ("pm-plessis-tremel", "municipal_police", "alert-safety", True) in targets(
        route_alert(safety_alert("35406"), territory))


def test_multi_info_alert_rule_does_not_depend_on_info_order(territory: Territory) -> None:
    # Fire and Safety both ask for fire_rescue: the first rule in routing.yaml wins (alert-fire),
    # whichever info comes first.
    area = AlertArea(area_desc="Montveille", geocodes=[KeyValue(value_name="INSEE", value="35401")])
    fire, safety = alert(area, category=CapCategory.Fire), alert(area, category=CapCategory.Safety)
    one = fire.model_copy(update={"infos": [*fire.infos, *safety.infos]})
    other = fire.model_copy(update={"infos": [*safety.infos, *fire.infos]})
    assert route_alert(one, territory).targets == route_alert(other, territory).targets
    assert ("sdis35", "fire_rescue", "alert-fire", False) in targets(route_alert(other, territory))


def test_no_area_covers_the_whole_town_marks_the_largest_share_fallback(territory: Territory) -> None:
    import dataclasses

    # Rule C: without the town hall's own stormwater area, nobody covers all of 35402: the
    # valley syndicate (largest share) is used for a phone report, and the rule says so.
    partial = dataclasses.replace(territory, service_areas=tuple(
        a for a in territory.service_areas if not (a.agency_id == "mairie-35402" and
                                                   a.service == ServiceKind.stormwater)))
    phoned = route_incident(incident("35402", C.blocked_drain), partial)
    assert targets(phoned) == [("syndicat-eaux-veille", "stormwater", f"drainage{LARGEST_SHARE_SUFFIX}",
                                True)]
    assert phoned.rules == ("drainage+largest_share",)
    # With a point the area covering it decides: no guess, no suffix.
    located = route_incident(incident("35402", C.blocked_drain, VALLEY_SAINT_MEEN), partial)
    assert targets(located) == [("syndicat-eaux-veille", "stormwater", "drainage", True)]
    # On the unmodified territory the town hall covers the whole town: no suffix.
    assert route_incident(incident("35402", C.blocked_drain), territory).rules == ("drainage",)


def test_alert_by_insee_geocodes(territory: Territory) -> None:
    area = AlertArea(area_desc="Est", geocodes=[KeyValue(value_name="INSEE", value="35403"),
                                                 KeyValue(value_name="INSEE", value="35406"),
                                                 KeyValue(value_name="EMMA_ID", value="FR521")])
    decision = route_alert(alert(area, category=CapCategory.Met), territory)
    assert decision.municipalities == ("35403", "35406")
    assert targets(decision) == [("cellule-veille", "monitoring_cell", "alert-weather", True),
                                 *pcs(["35403", "35406"])]
    # A flood alert on Trémel: the valley part is the syndicate's, the rest the town hall's.
    flood = route_alert(alert(AlertArea(area_desc="Trémel", geocodes=[
        KeyValue(value_name="INSEE", value="35406")]), code="flood"), territory)
    assert targets(flood) == [
        ("syndicat-eaux-veille", "stormwater", "alert-flood", True),
        ("mairie-35406", "stormwater", "alert-flood", False),
        ("sdis35", "fire_rescue", "alert-flood", False),
        ("cellule-veille", "monitoring_cell", "alert-flood", True),
        *pcs(["35406"]),
    ]
    assert flood.rules == ("alert-flood", "pcs-chain")


def test_alert_outside_the_territory(territory: Territory) -> None:
    far = shapely.Point(-3.1, 47.2).buffer(0.05)
    decision = route_alert(alert(AlertArea(area_desc="Morbihan", polygons=[ring(far)])), territory)
    assert (decision.unroutable, decision.routable) == (OUTSIDE_TERRITORY, False)
    assert decision.reason == "alert area (Morbihan) does not intersect the territory"
    unknown = route_alert(alert(AlertArea(area_desc="Ailleurs", geocodes=[
        KeyValue(value_name="INSEE", value="29019")])), territory)
    assert unknown.unroutable == OUTSIDE_TERRITORY


def test_alert_touching_only_the_border_does_not_affect_a_town(territory: Territory) -> None:
    m = territory.municipalities["35403"].geometry
    decision = route_alert(alert(AlertArea(area_desc="La Chapelle", polygons=[ring(m)])), territory)
    assert decision.municipalities == ("35403",)

