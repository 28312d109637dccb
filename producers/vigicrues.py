"""Vigicrues flood vigilance → CAP 1.2 alerts on the municipalities its river sections cross.

    veille import vigicrues FILE|URL [--sent TIME] [--sender ID]

Input: the GeoJSON Vigicrues publishes of its river sections (``InfoVigiCru.geojson``, one
feature per *tronçon*, WGS84). Only these fields are read:

- ``geometry``: LineString or MultiLineString of the section, lon/lat WGS84 (projected
  coordinates such as Lambert-93 are refused, not guessed);
- ``properties.CdEntCru``: the section's code (e.g. ``LO7``), its identity across bulletins;
- ``properties.LbEntCru``: its name (optional; the code is used without it);
- ``properties.NivInfViCr``: the vigilance level, 1 vert, 2 jaune, 3 orange, 4 rouge (the
  numbers, or the colour names in French or English, any case);
- ``properties.TypEntCru`` (optional): the entity type; only sections (8) are read when given,
  so a file that also holds the forecasting services' territories is accepted.

Output: one CAP alert per section at yellow or above that crosses the territory (shares a
length of line with a municipality's boundary, not just a point), ``category`` Met (CAP puts
floods there), eventCode ``veille=flood`` (the router's flood rules), area = the INSEE
geocodes of the crossed municipalities. Level → CAP, after the meaning Vigicrues gives each
colour (yellow: rises without serious damage; orange: significant overflows; red: major
flood, direct threat to lives):

    level  severity  urgency    certainty   expires
    2      Moderate  Expected   Possible    sent + 24 h (the vigilance's horizon)
    3      Severe    Expected   Likely      sent + 24 h
    4      Extreme   Immediate  Likely      sent + 24 h

Lifecycle, kept in ``<state_dir>/vigicrues-state.json`` (written only once the broker has
acknowledged): a section already alerted at the same level is not published again
(idempotent re-imports); a change of level is an ``Update`` referencing the previous alert,
as is the same level after 12 h (so the vigilance does not expire while it lasts); a section
back to green is a ``Cancel``; a section absent from the document is left alone (its alert
expires after 24 h). The identifier is ``vigicrues.<code>.<sent>``: the same
bulletin imported again with the same ``--sent`` is published once. One import at a time.

Bad input (malformed JSON, not a FeatureCollection, missing keys, unknown levels, other
geometries, oversized document) is refused as a whole: exit 2 with the reason, the metric
``veille_producer_rejected_total{record_type="Alert",reason="vigicrues"}``, nothing published.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import shape

from veille.config import Settings
from veille.schemas.models import Alert
from veille.territory import Territory

SENDER = "veille-vigicrues"
SECTION_TYPE = 8
HORIZON = timedelta(hours=24)
REFRESH_AFTER = timedelta(hours=12)
MAX_FEATURES = 5000
STATE_FILE = "vigicrues-state.json"
EXIT_REJECTED = 2
LEVELS = {"vert": 1, "green": 1, "jaune": 2, "yellow": 2, "orange": 3, "rouge": 4, "red": 4}
COLOUR = {1: "verte", 2: "jaune", 3: "orange", 4: "rouge"}
CAP_OF_LEVEL = {2: ("Moderate", "Expected", "Possible"), 3: ("Severe", "Expected", "Likely"),
                4: ("Extreme", "Immediate", "Likely")}


class VigicruesError(ValueError):
    """The document is refused as a whole (nothing is published)."""


class SectionProperties(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the real feed carries many more fields
    CdEntCru: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    LbEntCru: str | None = Field(default=None, max_length=300)
    NivInfViCr: int
    TypEntCru: int | None = None

    @field_validator("NivInfViCr", mode="before")
    @classmethod
    def _level(cls, value: Any) -> int:
        if isinstance(value, str):
            value = LEVELS.get(value.strip().lower(), value.strip())
        try:
            level = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a vigilance level (1-4 or vert/jaune/orange/rouge)") from None
        if not 1 <= level <= 4:
            raise ValueError(f"{level} is not a vigilance level (1-4)")
        return level


class LineGeometry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["LineString", "MultiLineString"]
    coordinates: list[Any]


class SectionFeature(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["Feature"]
    properties: SectionProperties
    geometry: LineGeometry | None


class VigilanceCollection(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(max_length=MAX_FEATURES)


@dataclass(frozen=True)
class Section:
    code: str
    name: str
    level: int
    municipalities: tuple[str, ...]  # crossed, INSEE codes, sorted


def _where(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def parse_sections(document: bytes | str, territory: Territory) -> list[Section]:
    """Every river section of the document (any level) with the municipalities it crosses."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VigicruesError(f"malformed JSON: {exc}") from None
    try:
        collection = VigilanceCollection.model_validate(data)
    except ValidationError as exc:
        raise VigicruesError(f"not a Vigicrues GeoJSON FeatureCollection: {_where(exc)}") from None
    sections: dict[str, Section] = {}
    for i, raw in enumerate(collection.features):
        kind = raw.get("properties", {}).get("TypEntCru") if isinstance(raw.get("properties"), dict) else None
        if kind is not None and str(kind) != str(SECTION_TYPE):
            continue  # a forecasting service's territory, not a section: its shape is a polygon
        try:
            feature = SectionFeature.model_validate(raw)
        except ValidationError as exc:
            raise VigicruesError(f"features[{i}]: {_where(exc)}") from None
        props = feature.properties
        if feature.geometry is None:
            raise VigicruesError(f"features[{i}] ({props.CdEntCru}): no geometry")
        try:
            line = shape(feature.geometry.model_dump())
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise VigicruesError(f"features[{i}] ({props.CdEntCru}): bad coordinates: {exc}") from None
        minx, miny, maxx, maxy = line.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            raise VigicruesError(f"features[{i}] ({props.CdEntCru}): coordinates are not WGS84 lon/lat "
                                 "(projected data is not accepted)")
        if props.CdEntCru in sections:
            raise VigicruesError(f"features[{i}]: section {props.CdEntCru} appears twice")
        sections[props.CdEntCru] = Section(props.CdEntCru, props.LbEntCru or props.CdEntCru,
                                           props.NivInfViCr, crossed(line, territory))
    return list(sections.values())


def crossed(line: Any, territory: Territory) -> tuple[str, ...]:
    """Municipalities the line runs through (a shared length, not a touching point)."""
    out = []
    for code, municipality in territory.municipalities.items():
        if shapely.intersects(line, municipality.geometry) and \
                shapely.intersection(line, municipality.geometry).length > 0:
            out.append(code)
    return tuple(sorted(out))


def cap_alert(section: Section, sent: datetime, *, sender: str = SENDER, msg_type: str = "Alert",
              references: list[str] | None = None) -> dict[str, Any]:
    """The Alert fields of one section at yellow or above (see the table in the module docstring)."""
    severity, urgency, certainty = CAP_OF_LEVEL[section.level]
    colour = COLOUR[section.level]
    return {
        "identifier": identifier(section.code, sent), "sender": sender, "sent": sent,
        "status": "Actual", "msg_type": msg_type, "scope": "Public", "references": references or [],
        "infos": [{
            "language": "fr-FR", "category": ["Met"], "event": f"Vigilance crues {colour}",
            "event_codes": [{"value_name": "veille", "value": "flood"},
                            {"value_name": "vigicrues_level", "value": str(section.level)},
                            {"value_name": "vigicrues_section", "value": section.code}],
            "urgency": urgency, "severity": severity, "certainty": certainty,
            "effective": sent, "expires": sent + HORIZON,
            "headline": f"Vigilance {colour} crues : {section.name}"[:300],
            "areas": [{"area_desc": f"Tronçon {section.name} ({section.code})"[:500],
                       "geocodes": [{"value_name": "INSEE", "value": m} for m in section.municipalities]}],
        }],
    }


def identifier(code: str, sent: datetime) -> str:
    return f"vigicrues.{code}.{sent.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def reference(sender: str, alert_id: str, sent: str) -> str:
    return f"{sender},{alert_id},{sent}"


# --------------------------------------------------------------------------- lifecycle state


@dataclass(frozen=True)
class Planned:
    section: str
    alert: dict[str, Any] | None  # None: a section back to green that was never alerted
    level: int


class State:
    """Last alert published per section: {code: {identifier, sent, level}}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.sections: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except FileNotFoundError:
            self.sections = {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sections, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: a crash leaves the old state, never half a file


def plan(sections: list[Section], state: State, sent: datetime, sender: str = SENDER) -> list[Planned]:
    """What to publish: new vigilances, changes (Update), ends (Cancel); nothing for the unchanged."""
    out = []
    for s in sections:
        prev = state.sections.get(s.code)
        refs = [reference(sender, prev["identifier"], prev["sent"])] if prev else []
        if s.level >= 2 and s.municipalities:
            if prev is not None:
                age = sent - datetime.fromisoformat(prev["sent"])
                if prev["sent"] == sent.isoformat() or (prev["level"] == s.level and age < REFRESH_AFTER):
                    continue  # already published: idempotent
            kind = "Update" if prev else "Alert"
            out.append(Planned(s.code, cap_alert(s, sent, sender=sender, msg_type=kind, references=refs),
                               s.level))
        elif prev is not None:
            # Back to green (or off the territory): close the vigilance the hub announced.
            ended = Section(s.code, s.name, int(prev["level"]), tuple(prev.get("municipalities", ())))
            alert = cap_alert(ended, sent, sender=sender, msg_type="Cancel", references=refs)
            alert["infos"][0]["headline"] = f"Fin de vigilance crues : {s.name}"[:300]
            out.append(Planned(s.code, alert, 1))
    return out


def remember(state: State, planned: Planned) -> None:
    if planned.alert is None:
        return
    if planned.alert["msg_type"] == "Cancel":
        state.sections.pop(planned.section, None)
        return
    geocodes = planned.alert["infos"][0]["areas"][0]["geocodes"]
    state.sections[planned.section] = {
        "identifier": planned.alert["identifier"], "sent": planned.alert["sent"].isoformat(),
        "level": planned.level, "municipalities": [g["value"] for g in geocodes]}


def validated_alerts(planned: list[Planned]) -> list[dict[str, Any]]:
    """Every alert checked by the Alert model before any is published."""
    alerts = [p.alert for p in planned if p.alert is not None]
    for alert in alerts:
        try:
            Alert.model_validate(alert)
        except ValidationError as exc:
            raise VigicruesError(f"{alert['identifier']}: {_where(exc)}") from None
    return alerts


# --------------------------------------------------------------------------- import


def import_vigicrues(settings: Settings, source: str, *, sent: datetime | None = None,
                     sender: str = SENDER, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``veille import vigicrues``: 0 published (or nothing to publish), 1 delivery failed, 2 refused."""
    from veille.producers.cap_xml import CapError, read_source
    from veille.producers.metrics import REJECTED
    from veille.producers.sdk import DeliveryReport, Publisher
    from veille.territory import load_territory

    if sent is not None and sent.tzinfo is None:
        print("--sent needs its UTC offset (e.g. 2026-11-29T16:00:00+01:00)", file=err)
        return EXIT_REJECTED
    sent = (sent or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    state = State(Path(settings.state_dir) / STATE_FILE)
    try:
        sections = parse_sections(read_source(source), load_territory(settings.territory_dir))
        planned = plan(sections, state, sent, sender)
        alerts = validated_alerts(planned)
    except (VigicruesError, CapError, OSError) as exc:
        REJECTED.labels("Alert", "vigicrues").inc()
        print(f"{source}: {getattr(exc, 'reason', exc)}", file=err)
        return EXIT_REJECTED
    alerted = sum(1 for s in sections if s.level >= 2 and s.municipalities)
    if not alerts:
        print(f"{len(sections)} sections, {alerted} in vigilance on the territory: nothing new to publish",
              file=out)
        return 0
    acknowledged: set[str] = set()

    def on_result(report: DeliveryReport) -> None:
        if report.ok:
            acknowledged.add(report.event_id)

    with Publisher(settings, client_id="veille-import-vigicrues") as publisher:
        for alert in alerts:
            publisher.publish(alert, record_type="Alert", on_result=on_result)
        summary = publisher.flush()
    for p in planned:  # only what the broker acknowledged: the rest is planned again next time
        if p.alert is not None and p.alert["identifier"] in acknowledged:
            remember(state, p)
    state.save()
    kinds = Counter(str(a["msg_type"]) for a in alerts)
    print(f"{len(sections)} sections, {alerted} in vigilance on the territory; published "
          f"{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; {summary.acknowledged} acknowledged, "
          f"{len(summary.failed)} failed", file=out)
    return 0 if summary.ok else 1
