"""CAP 1.2 out: each stored alert as CAP XML, and an Atom feed of a municipality's active alerts.

    GET /cap/feed.atom?municipality=35401   Atom feed, one entry per alert in force, the CAP
                                            <alert> inline in <content> (as MeteoAlarm does)
    GET /cap/feed.atom                      the same for the whole territory
    GET /cap/alerts/{key}.xml               one alert (any state), application/cap+xml

``{key}`` is the URL-safe base64 of ``sender,identifier`` (CAP forbids commas in both, and
an identifier may hold ``/`` or ``:``), as written in each entry's link. Mount with
``add_cap_routes(app, store)`` in the process that owns the store (the console).

Writing: the pure functions ``alert_xml`` (an Alert record) and ``row_alert`` (a stored
row) are the inverse of ``veille.producers.cap_xml``: every element it maps is written back,
in the order of the CAP 1.2 schema, so XML → Alert → XML keeps every mapped field. Times are
written as CAP wants them: seconds and a numeric offset, never ``Z`` nor fractions. A row
stored before migration 0003 has no ``cap_json``: it is served from its summary columns,
with one area made of the INSEE geocodes of its municipalities.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from veille.reads import alert_state
from veille.schemas.models import Alert, AlertArea, AlertInfo, CapCategory
from veille.sinks.store import Store

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_TYPE = "application/cap+xml"
ATOM_TYPE = "application/atom+xml"
STORE_KEY: web.AppKey[Store] = web.AppKey("cap_store", Store)
PREFIX_KEY: web.AppKey[str] = web.AppKey("cap_prefix", str)
INSEE_RE = r"^(?:\d{5}|2[AB]\d{3})$"

# Prefixes are process-wide in ElementTree: Atom as the default namespace (its link
# attributes are unqualified, which tostring(default_namespace=...) refuses), CAP as "cap".
ET.register_namespace("", ATOM_NS)
ET.register_namespace("cap", CAP_NS)


def cap_time(value: datetime) -> str:
    """CAP dateTime: ``2026-06-17T14:57:00+00:00`` (the schema's pattern has no fraction, no Z)."""
    return value.replace(microsecond=0).isoformat()


def _sub(parent: ET.Element, name: str, text: str | None, ns: str = CAP_NS) -> None:
    if text is not None:
        ET.SubElement(parent, f"{{{ns}}}{name}").text = text


def _pairs(parent: ET.Element, name: str, pairs: list[Any]) -> None:
    for pair in pairs:
        element = ET.SubElement(parent, f"{{{CAP_NS}}}{name}")
        _sub(element, "valueName", pair.value_name)
        _sub(element, "value", pair.value)


def _area(parent: ET.Element, area: AlertArea) -> None:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}area")
    _sub(element, "areaDesc", area.area_desc)
    for ring in area.polygons:
        _sub(element, "polygon", " ".join(f"{p.lat!r},{p.lon!r}" for p in ring))
    for circle in area.circles:
        _sub(element, "circle", f"{circle.center.lat!r},{circle.center.lon!r} {circle.radius_km!r}")
    _pairs(element, "geocode", area.geocodes)


def _info(parent: ET.Element, info: AlertInfo) -> None:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}info")
    _sub(element, "language", info.language)
    for category in info.category:
        _sub(element, "category", category.value)
    _sub(element, "event", info.event)
    _sub(element, "urgency", info.urgency.value)
    _sub(element, "severity", info.severity.value)
    _sub(element, "certainty", info.certainty.value)
    _pairs(element, "eventCode", info.event_codes)
    for name in ("effective", "onset", "expires"):
        value = getattr(info, name)
        _sub(element, name, cap_time(value) if value is not None else None)
    _sub(element, "headline", info.headline)
    _sub(element, "instruction", info.instruction)
    for area in info.areas:
        _area(element, area)


def alert_element(alert: Alert) -> ET.Element:
    """The CAP 1.2 ``<alert>`` element of an Alert record."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", alert.identifier)
    _sub(root, "sender", alert.sender)
    _sub(root, "sent", cap_time(alert.sent))
    _sub(root, "status", alert.status.value)
    _sub(root, "msgType", alert.msg_type.value)
    _sub(root, "scope", alert.scope.value)
    _sub(root, "references", " ".join(alert.references) if alert.references else None)
    for info in alert.infos:
        _info(root, info)
    return root


def alert_xml(alert: Alert) -> bytes:
    """A standalone CAP 1.2 document (UTF-8, CAP as the default namespace)."""
    return ET.tostring(alert_element(alert), encoding="utf-8", xml_declaration=True,
                       default_namespace=CAP_NS)


def row_alert(row: dict[str, Any]) -> Alert:
    """The Alert of a stored ``alerts`` row (see the module docstring for pre-0003 rows)."""
    if row.get("cap_json"):
        return Alert.model_validate_json(row["cap_json"])
    area = AlertArea(area_desc=", ".join(row["municipalities"]) or "territory",
                     geocodes=[{"value_name": "INSEE", "value": m} for m in row["municipalities"]])
    # The summary's category is the routing category (a CAP one, or the hub's eventCode).
    category = row["category"] if row["category"] in CapCategory.__members__ else "Other"
    info = {"category": [category], "event": row["event"], "urgency": row["urgency"],
            "severity": row["severity"], "certainty": "Unknown", "headline": row["headline"],
            "expires": row.get("expires"), "areas": [area]}
    return Alert.model_validate({
        "identifier": row["identifier"], "sender": row["sender"], "sent": _aware(row["sent"]),
        "status": row["status"], "msg_type": row["msg_type"], "scope": row.get("scope") or "Public",
        "references": row.get("references") or [], "infos": [info]})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def alert_key(sender: str, identifier: str) -> str:
    return base64.urlsafe_b64encode(f"{sender},{identifier}".encode()).decode().rstrip("=")


def parse_key(key: str) -> tuple[str, str] | None:
    try:
        text = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
        sender, sep, identifier = text.partition(",")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (sender, identifier) if sep and sender and identifier else None


def atom_feed(rows: list[dict[str, Any]], *, title: str, feed_id: str, self_url: str, base_url: str,
              now: datetime | None = None) -> bytes:
    """An Atom feed, one entry per row, each holding its CAP alert inline."""
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _sub(feed, "id", feed_id, ATOM_NS)
    _sub(feed, "title", title, ATOM_NS)
    alerts = [row_alert(r) for r in rows]
    updated = max((a.sent for a in alerts), default=now or datetime.now(UTC))
    _sub(feed, "updated", cap_time(updated), ATOM_NS)
    ET.SubElement(feed, f"{{{ATOM_NS}}}link", rel="self", type=ATOM_TYPE, href=self_url)
    for alert in alerts:
        entry = ET.SubElement(feed, f"{{{ATOM_NS}}}entry")
        _sub(entry, "id", f"{base_url}/cap/alerts/{alert_key(alert.sender, alert.identifier)}.xml", ATOM_NS)
        _sub(entry, "title", alert.infos[0].headline or alert.infos[0].event, ATOM_NS)
        _sub(entry, "updated", cap_time(alert.sent), ATOM_NS)
        author = ET.SubElement(entry, f"{{{ATOM_NS}}}author")
        _sub(author, "name", alert.sender, ATOM_NS)
        ET.SubElement(entry, f"{{{ATOM_NS}}}link", rel="alternate", type=CAP_TYPE,
                      href=f"{base_url}/cap/alerts/{alert_key(alert.sender, alert.identifier)}.xml")
        content = ET.SubElement(entry, f"{{{ATOM_NS}}}content", type=CAP_TYPE)
        content.append(alert_element(alert))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


# --------------------------------------------------------------------------- HTTP


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{request.app[PREFIX_KEY]}"


async def feed_handler(request: web.Request) -> web.Response:
    municipality = request.query.get("municipality")
    if municipality is not None and not re.match(INSEE_RE, municipality):
        return web.json_response({"error": f"municipality {municipality!r} is not an INSEE code"}, status=400)
    store = request.app[STORE_KEY]
    # The store's lock is a threading lock: query off the event loop.
    rows = await asyncio.to_thread(alert_state.active_alerts, store, municipality)
    scope = f"municipality {municipality}" if municipality else "territory"
    body = atom_feed(rows, title=f"Veille: active CAP alerts, {scope}",
                     feed_id=f"urn:veille:cap:feed:{municipality or 'all'}",
                     self_url=str(request.url), base_url=_base_url(request))
    return web.Response(body=body, content_type=ATOM_TYPE, charset="utf-8")


async def alert_handler(request: web.Request) -> web.Response:
    parsed = parse_key(request.match_info["key"])
    if parsed is None:
        return web.json_response({"error": "not an alert key (base64url of 'sender,identifier')"}, status=400)
    row = await asyncio.to_thread(alert_state.alert_row, request.app[STORE_KEY], *parsed)
    if row is None:
        return web.json_response({"error": "no such alert"}, status=404)
    return web.Response(body=alert_xml(row_alert(row)), content_type=CAP_TYPE, charset="utf-8")


def add_cap_routes(app: web.Application, store: Store, prefix: str = "") -> None:
    """Registers ``{prefix}/cap/feed.atom`` and ``{prefix}/cap/alerts/{key}.xml`` on an aiohttp
    application (the console mounts them under ``/console``)."""
    app[STORE_KEY] = store
    app[PREFIX_KEY] = prefix
    app.router.add_get(f"{prefix}/cap/feed.atom", feed_handler)
    app.router.add_get(prefix + r"/cap/alerts/{key:[A-Za-z0-9_-]+}.xml", alert_handler)
