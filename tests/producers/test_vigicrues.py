"""Vigicrues flood vigilance → CAP alerts: mapping, lifecycle, bad input, and through the real router."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cap_helpers import routed_alerts, routed_hub
from hub_helpers import hub_settings, settings_env
from paths import FIXTURES
from producer_helpers import message_count
from prometheus_client import REGISTRY

from veille.config import Settings
from veille.producers.vigicrues import (
    SENDER,
    State,
    VigicruesError,
    import_vigicrues,
    parse_sections,
    plan,
    remember,
    validated_alerts,
)
from veille.schemas.models import Alert
from veille.territory import load_territory
from veille.topics import Topics

FIXTURE = FIXTURES / "vigicrues" / "InfoVigiCru.geojson"
DOC: dict[str, Any] = json.loads(FIXTURE.read_text())
SENT = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def with_levels(**levels: Any) -> str:
    doc = json.loads(FIXTURE.read_text())
    for feature in doc["features"]:
        code = feature["properties"]["CdEntCru"]
        if code in levels:
            feature["properties"]["NivInfViCr"] = levels[code]
    return json.dumps(doc)


def planned(document: str, state: State, sent: datetime = SENT) -> list[dict[str, Any]]:
    steps = plan(parse_sections(document, load_territory()), state, sent)
    alerts = validated_alerts(steps)
    for step in steps:
        remember(state, step)
    return alerts


def test_sections_in_vigilance_become_cap_alerts_on_the_towns_they_cross(tmp_path: Path) -> None:
    alerts = planned(FIXTURE.read_text(), State(tmp_path / "s.json"))
    # ME1 is green, LO7 is outside the territory, SPC-VMA is not a section (TypEntCru 5).
    by_section = {a["infos"][0]["event_codes"][2]["value"]: Alert.model_validate(a) for a in alerts}
    assert sorted(by_section) == ["SE1", "VE1", "VE2"]
    expected = {"VE1": ("Moderate", "Expected", "Possible", ["35401", "35402"]),
                "VE2": ("Severe", "Expected", "Likely", ["35401", "35403"]),
                "SE1": ("Extreme", "Immediate", "Likely", ["35405", "35406"])}
    for code, alert in by_section.items():
        (info,) = alert.infos
        towns = [g.value for g in info.areas[0].geocodes]
        assert (info.severity, info.urgency, info.certainty, towns) == expected[code]
        assert [c.value for c in info.category] == ["Met"] and info.event_codes[0].value == "flood"
        assert alert.identifier == f"vigicrues.{code}.{SENT:%Y%m%dT%H}0000Z" and alert.sender == SENDER
        assert alert.msg_type == "Alert" and info.expires == SENT + timedelta(hours=24)


def test_lifecycle_idempotent_update_refresh_cancel(tmp_path: Path) -> None:
    state = State(tmp_path / "s.json")
    first = planned(FIXTURE.read_text(), state)
    assert planned(FIXTURE.read_text(), state) == []  # same bulletin: nothing again
    assert planned(FIXTURE.read_text(), state, SENT + timedelta(hours=2)) == []  # same levels
    later = SENT + timedelta(hours=3)
    changed = planned(with_levels(VE1=1, VE2=4), state, later)
    kinds = {a["identifier"]: (a["msg_type"], a["references"], a["infos"][0]["severity"]) for a in changed}
    old = {a["infos"][0]["event_codes"][2]["value"]: a for a in first}
    assert kinds == {
        f"vigicrues.VE1.{later:%Y%m%dT%H%M%SZ}": (
            "Cancel", [f"{SENDER},{old['VE1']['identifier']},{SENT.isoformat()}"], "Moderate"),
        f"vigicrues.VE2.{later:%Y%m%dT%H%M%SZ}": (
            "Update", [f"{SENDER},{old['VE2']['identifier']},{SENT.isoformat()}"], "Extreme"),
    }
    # The same levels 12 h after their last alert: refreshed (Update), so that a lasting
    # vigilance does not expire; VE2, updated 10 h ago, not yet.
    refreshed = planned(with_levels(VE1=1, VE2=4), state, SENT + timedelta(hours=13))
    assert [(a["identifier"].split(".")[1], a["msg_type"]) for a in refreshed] == [("SE1", "Update")]
    state.save()
    assert set(State(tmp_path / "s.json").sections) == {"VE2", "SE1"}


@pytest.mark.parametrize(("value", "level"), [(2, 2), ("3", 3), ("jaune", 2), ("Orange", 3), ("ROUGE", 4),
                                              ("red", 4), ("vert", 1)])
def test_levels_as_numbers_or_colours(value: Any, level: int) -> None:
    (section,) = [s for s in parse_sections(with_levels(VE1=value), load_territory()) if s.code == "VE1"]
    assert section.level == level


def _bad(doc: dict[str, Any], **props: Any) -> str:
    doc = json.loads(json.dumps(doc))
    doc["features"][0]["properties"].update(props)
    return json.dumps(doc)


BAD = {
    "malformed JSON": ('{"type": "FeatureCollection", "features": [', "malformed JSON"),
    "not a collection": ('{"type": "Feature"}', "not a Vigicrues GeoJSON FeatureCollection"),
    "unknown level": (_bad(DOC, NivInfViCr="violet"), "'violet' is not a vigilance level"),
    "level out of range": (_bad(DOC, NivInfViCr=5), "5 is not a vigilance level"),
    "wrong keys": (json.dumps({**DOC, "features": [{"type": "Feature", "geometry": None,
                                                     "properties": {"code": "VE1", "niveau": 2}}]}),
                   "features[0]: properties.CdEntCru: Field required"),
    "projected": (json.dumps({**DOC, "features": [{**DOC["features"][0], "geometry": {
        "type": "LineString", "coordinates": [[351000, 6789000], [352000, 6789500]]}}]}), "not WGS84"),
    "polygon section": (json.dumps({**DOC, "features": [{**DOC["features"][0],
                                                          "geometry": DOC["features"][5]["geometry"]}]}),
                        "geometry.type: Input should be 'LineString' or 'MultiLineString'"),
    "duplicate": (json.dumps({**DOC, "features": [DOC["features"][0], DOC["features"][0]]}), "appears twice"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_documents_are_named(name: str) -> None:
    document, reason = BAD[name]
    with pytest.raises(VigicruesError) as caught:
        parse_sections(document, load_territory())
    assert reason in str(caught.value)


def rejected() -> float:
    return REGISTRY.get_sample_value("veille_producer_rejected_total",
                                     {"record_type": "Alert", "reason": "vigicrues"}) or 0.0


def test_refused_imports_exit_2_count_and_publish_nothing(kafka: Any, tmp_path: Path) -> None:
    settings: Settings = hub_settings(kafka.settings, tmp_path)
    files = {}
    for name, (document, _) in BAD.items():
        files[name] = tmp_path / f"{name.replace(' ', '_')}.geojson"
        files[name].write_text(document)
    oversized = tmp_path / "oversized.geojson"
    oversized.write_text('{"type": "FeatureCollection", "features": []}' + " " * (4 * 1024 * 1024))
    files["oversized"] = oversized
    reasons = {**{n: r for n, (_, r) in BAD.items()}, "oversized": "is larger than"}
    for name, path in files.items():
        before, err = rejected(), io.StringIO()
        assert import_vigicrues(settings, str(path), out=io.StringIO(), err=err) == 2, name
        assert reasons[name] in err.getvalue(), (name, err.getvalue())
        assert rejected() == before + 1
    assert message_count(settings, [Topics(settings.topic_prefix).alerts]) == 0
    assert not (tmp_path / "vigicrues-state.json").exists()


def test_import_through_the_router_once_then_update_and_cancel(kafka: Any, tmp_path: Path) -> None:
    with routed_hub(kafka.settings, tmp_path) as settings:
        env = settings_env(settings)
        sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

        def veille(source: str, when: datetime) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "veille.cli", "import", "vigicrues", source,
                                   "--sent", when.isoformat()], env=env, capture_output=True, text=True,
                                  timeout=120)

        done = veille(str(FIXTURE), sent)
        assert done.returncode == 0, done.stderr
        assert "published 3 Alert; 3 acknowledged" in done.stdout
        again = veille(str(FIXTURE), sent)
        assert again.returncode == 0 and "nothing new to publish" in again.stdout, again.stdout

        stamp = f"{sent:%Y%m%dT%H%M%SZ}"
        routed = routed_alerts(settings, {f"vigicrues.{c}.{stamp}" for c in ("VE1", "VE2", "SE1")})
        towns = {a["identifier"].split(".")[1]: (a["municipalities"], a["severity"], a["category"])
                 for a in routed}
        assert towns == {"VE1": (["35401", "35402"], "Moderate", "flood"),
                         "VE2": (["35401", "35403"], "Severe", "flood"),
                         "SE1": (["35405", "35406"], "Extreme", "flood")}
        assert all(a["dispatches"] for a in routed)  # routed to agencies, not only stored

        changed = tmp_path / "changed.geojson"
        changed.write_text(with_levels(VE1=1, VE2=4))
        later = sent + timedelta(minutes=5)
        done = veille(str(changed), later)
        assert done.returncode == 0 and "published 1 Cancel, 1 Update" in done.stdout, done.stdout
        later_stamp = f"{later:%Y%m%dT%H%M%SZ}"
        routed = routed_alerts(settings, {f"vigicrues.VE1.{later_stamp}", f"vigicrues.VE2.{later_stamp}"})
        assert len(routed) == 5  # the re-import published nothing
        cancel = next(a for a in routed if a["identifier"] == f"vigicrues.VE1.{later_stamp}")
        assert cancel["msg_type"] == "Cancel"
        assert cancel["references"] == [f"{SENDER},vigicrues.VE1.{stamp},{sent.isoformat()}"]


def test_sent_without_offset_is_refused(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    err = io.StringIO()
    assert import_vigicrues(settings, str(FIXTURE), sent=datetime(2026, 1, 1, 10), err=err) == 2
    assert "needs its UTC offset" in err.getvalue()
