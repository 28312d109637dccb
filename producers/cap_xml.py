"""CAP 1.2 XML in: an OASIS ``<alert>`` (or an Atom feed of them) to the hub's Alert record.

Untrusted XML is parsed with defusedxml: a DTD, hence any entity (the "billion laughs"
expansion bomb, external entities reading files or URLs), is refused before anything is
expanded. The document is then checked against the CAP 1.2 specification: required
elements (alert: identifier, sender, sent, status, msgType, scope; info: category, event,
urgency, severity, certainty; area: areaDesc), enumerations, a ``polygon`` is a closed ring
of at least 4 ``lat,lon`` pairs, a ``circle`` is ``lat,lon radius`` (km). An Atom feed is
accepted when each entry's ``<content>`` holds a CAP alert inline (an entry that only links
to its alert is refused: the intake fetches no URL it is handed); every alert of a document
is checked before any is published, so a bad document publishes nothing. Times are read
leniently on one point: a ``Z`` designator, which CAP forbids, is taken as UTC.

Mapping: CAP element names to the record's snake_case fields; ``eventCode`` and ``geocode``
valueName/value pairs; ``references`` (space-separated ``sender,identifier,sent`` triples)
to a list. Elements the hub does not route on (description, responseType, contact, web,
senderName, parameter, resource, altitude, ceiling...) are not carried.

    POST /v1/alerts  Content-Type: application/cap+xml (or application/atom+xml)
    veille import cap FILE|URL
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from aiohttp import web
from defusedxml import DefusedXmlException

from veille.producers.gate import authorise, deliver
from veille.producers.intake_keys import IntakeKey
from veille.producers.sdk import RECORD_FIELD, Rejected, validate
from veille.schemas.models import (
    CapCategory,
    CapCertainty,
    CapMsgType,
    CapScope,
    CapSeverity,
    CapStatus,
    CapUrgency,
)
from veille.schemas.registry import RegistryUnavailable

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
ATOM = "{http://www.w3.org/2005/Atom}"
MAX_ALERTS_PER_FEED = 100


class CapError(ValueError):
    """The document is refused: ``status`` 400 (unreadable) or 422 (not valid CAP 1.2)."""

    def __init__(self, status: int, reason: str, where: str = RECORD_FIELD) -> None:
        super().__init__(reason)
        self.status, self.reason, self.where = status, reason, where


def _text(parent: Element, name: str, where: str, *, required: bool = False) -> str | None:
    child = parent.find(CAP + name)
    value = (child.text or "").strip() if child is not None else ""
    if not value:
        if required:
            raise CapError(422, f"missing required element <{name}>", where)
        return None
    return value


def _all(parent: Element, name: str) -> list[str]:
    return [(c.text or "").strip() for c in parent.findall(CAP + name) if (c.text or "").strip()]


def _enum(parent: Element, name: str, enum: type[StrEnum], where: str) -> str:
    value = _text(parent, name, where, required=True) or ""
    if value not in enum.__members__:
        allowed = ", ".join(enum.__members__)
        raise CapError(422, f"<{name}> {value!r} is not one of {allowed}", where)
    return value


def _time(parent: Element, name: str, where: str, *, required: bool = False) -> datetime | None:
    value = _text(parent, name, where, required=required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CapError(422, f"<{name}> {value!r} is not a CAP dateTime with its offset "
                            "(e.g. 2026-06-17T14:57:00-07:00)", where)
    return parsed


def _pairs(parent: Element, name: str, where: str) -> list[dict[str, str]]:
    out = []
    for element in parent.findall(CAP + name):
        value_name = _text(element, "valueName", f"{where}.{name}", required=True)
        value = _text(element, "value", f"{where}.{name}", required=True)
        out.append({"value_name": value_name or "", "value": value or ""})
    return out


def _point(text: str, what: str, where: str) -> dict[str, float]:
    lat, sep, lon = text.partition(",")
    try:
        if not sep:
            raise ValueError
        return {"lat": float(lat), "lon": float(lon)}
    except ValueError:
        raise CapError(422, f"<{what}> point {text!r} is not 'lat,lon'", where) from None


def _polygon(text: str, where: str) -> list[dict[str, float]]:
    ring = [_point(p, "polygon", where) for p in text.split()]
    if len(ring) < 4 or ring[0] != ring[-1]:
        raise CapError(422, f"<polygon> has {len(ring)} points: CAP requires a closed ring of at least "
                            "4 'lat,lon' pairs, the first equal to the last", where)
    return ring


def _circle(text: str, where: str) -> dict[str, Any]:
    parts = text.split()
    if len(parts) != 2:
        raise CapError(422, f"<circle> {text!r} is not 'lat,lon radius'", where)
    try:
        radius = float(parts[1])
    except ValueError:
        raise CapError(422, f"<circle> radius {parts[1]!r} is not a number of km", where) from None
    return {"center": _point(parts[0], "circle", where), "radius_km": radius}


def _area(element: Element, where: str) -> dict[str, Any]:
    return {"area_desc": _text(element, "areaDesc", where, required=True),
            "polygons": [_polygon(p, where) for p in _all(element, "polygon")],
            "circles": [_circle(c, where) for c in _all(element, "circle")],
            "geocodes": _pairs(element, "geocode", where)}


def _info(element: Element, where: str) -> dict[str, Any]:
    categories = _all(element, "category")
    if not categories:
        raise CapError(422, "missing required element <category>", where)
    for category in categories:
        if category not in CapCategory.__members__:
            raise CapError(422, f"<category> {category!r} is not one of {', '.join(CapCategory)}", where)
    info: dict[str, Any] = {
        "language": _text(element, "language", where) or "en-US",  # CAP's default
        "category": categories, "event": _text(element, "event", where, required=True),
        "event_codes": _pairs(element, "eventCode", where),
        "urgency": _enum(element, "urgency", CapUrgency, where),
        "severity": _enum(element, "severity", CapSeverity, where),
        "certainty": _enum(element, "certainty", CapCertainty, where),
        "headline": _text(element, "headline", where), "instruction": _text(element, "instruction", where),
        "areas": [_area(a, f"{where}.area[{i}]") for i, a in enumerate(element.findall(CAP + "area"))],
    }
    for name in ("effective", "onset", "expires"):
        info[name] = _time(element, name, where)
    return info


def _token(parent: Element, name: str, where: str) -> str:
    """identifier and sender: no spaces, commas nor restricted characters (< and &)."""
    value = _text(parent, name, where, required=True) or ""
    if any(c in value for c in " \t\n,<&"):
        raise CapError(422, f"<{name}> must not contain spaces, commas, '<' or '&'", where)
    return value


def alert_from_element(root: Element, where: str = "alert") -> dict[str, Any]:
    """The Alert fields of one CAP 1.2 ``<alert>`` element; CapError if it is not valid CAP."""
    if root.tag != CAP + "alert":
        raise CapError(400, f"expected a CAP 1.2 <alert> ({CAP[1:-1]}), got {root.tag}", where)
    references = _text(root, "references", where)
    return {
        "identifier": _token(root, "identifier", where),
        "sender": _token(root, "sender", where),
        "sent": _time(root, "sent", where, required=True),
        "status": _enum(root, "status", CapStatus, where),
        "msg_type": _enum(root, "msgType", CapMsgType, where),
        "scope": _enum(root, "scope", CapScope, where),
        "references": references.split() if references else [],
        "infos": [_info(e, f"{where}.info[{i}]") for i, e in enumerate(root.findall(CAP + "info"))],
    }


def parse_cap(document: bytes | str) -> list[dict[str, Any]]:
    """Every alert of a CAP document or Atom feed of CAP entries, checked; raises CapError."""
    try:
        root = SafeET.fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(400, f"refused XML: {type(exc).__name__} (DTDs and entities are not accepted)") \
            from None
    except ParseError as exc:
        raise CapError(400, f"malformed XML: {exc}") from None
    if root.tag == ATOM + "feed":
        alerts: list[dict[str, Any]] = []
        entries = root.findall(ATOM + "entry")
        if len(entries) > MAX_ALERTS_PER_FEED:
            raise CapError(422, f"{len(entries)} entries (at most {MAX_ALERTS_PER_FEED} per feed)")
        for i, entry in enumerate(entries):
            content = entry.find(ATOM + "content")
            alert = content.find(CAP + "alert") if content is not None else None
            if alert is None:
                raise CapError(422, "the entry's <content> holds no CAP 1.2 <alert>", f"entry[{i}]")
            alerts.append(alert_from_element(alert, f"entry[{i}].alert"))
        if not alerts:
            raise CapError(422, "the feed has no entry")
        return alerts
    return [alert_from_element(root)]


def validated(document: bytes | str) -> list[dict[str, Any]]:
    """parse_cap, then the Alert model's own checks (geometry bounds, times) on every alert."""
    alerts = parse_cap(document)
    for i, alert in enumerate(alerts):
        try:
            validate(alert, "Alert")
        except Rejected as exc:
            where = f"entry[{i}]." if len(alerts) > 1 else ""
            raise CapError(422, "; ".join(f"{where}{e.field}: {e.reason}" for e in exc.errors)) from None
    return alerts


# --------------------------------------------------------------------------- HTTP intake


async def publish_cap(app: web.Application, key: IntakeKey | None, body: bytes) -> web.Response:
    """``POST /v1/alerts`` with a CAP XML body: 202 once every alert was acknowledged."""
    refused = authorise(key, "Alert", {}, ())
    if refused is not None:
        return refused
    try:
        alerts = validated(body)
    except CapError as exc:
        return web.json_response({"errors": [{"field": exc.where, "reason": exc.reason}]}, status=exc.status)
    published: list[dict[str, Any]] = []
    for alert in alerts:
        try:
            queued, report = await deliver(app, alert, "Alert")
        except RegistryUnavailable as exc:
            report, reason = None, str(exc)
        except Rejected as exc:  # already validated: only a changed territory could get here
            return web.json_response({"errors": [e.as_json() for e in exc.errors],
                                      "published": published}, status=422)
        else:
            reason = (report.error if report else None) or "broker did not acknowledge in time"
        if report is None or not report.ok:
            # Retry the whole document: its identifiers are unchanged and re-sends are dropped.
            return web.json_response({"errors": [{"field": alert["identifier"], "reason": reason}],
                                      "published": published}, status=503, headers={"Retry-After": "5"})
        published.append({"id": queued.event_id, "topic": queued.topic, "partition": report.partition,
                          "offset": report.offset})
    return web.json_response({"published": published}, status=202)


# --------------------------------------------------------------------------- CLI


def read_source(source: str, *, timeout: float = 20.0, max_bytes: int = 4 * 1024 * 1024,
                opener: Callable[..., Any] | None = None) -> bytes:
    """A file's bytes, or an http(s) URL's (bounded size and time; never other schemes)."""
    if source.startswith(("http://", "https://")):
        import urllib.request

        with (opener or urllib.request.urlopen)(source, timeout=timeout) as resp:
            data = resp.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise CapError(400, f"{source} is larger than {max_bytes} bytes")
        return bytes(data)
    with open(source, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CapError(400, f"{source} is larger than {max_bytes} bytes")
    return data

