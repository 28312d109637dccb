"""CAP 1.2 out, the pure part: Alert → CAP XML and Atom, read back by the importer's own parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from cap_helpers import SPEC_EXAMPLE, cap_alert, reference, today

from veille.producers.cap_xml import parse_cap, validated
from veille.reads.cap_feed import alert_key, alert_xml, atom_feed, parse_key, row_alert
from veille.schemas.models import Alert

NS = "{urn:oasis:names:tc:emergency:cap:1.2}"
ATOM = "{http://www.w3.org/2005/Atom}"
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
# Element order of CAP 1.2 (section 3.2, and the XML schema's sequences), for what the hub maps.
ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "scope", "references", "info"]
INFO_ORDER = ["language", "category", "event", "urgency", "severity", "certainty", "eventCode",
              "effective", "onset", "expires", "headline", "instruction", "area"]
AREA_ORDER = ["areaDesc", "polygon", "circle", "geocode"]
TIMES = {"sent", "effective", "onset", "expires"}

DOCUMENTS = {
    "spec example": lambda: today(SPEC_EXAMPLE),
    "every mapped element": lambda: cap_alert(
        "urn:veille:out:1", msg_type="Update", municipalities=("35401", "35403"),
        references=[reference("urn:veille:out:0", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
                    reference("urn:veille:out:00", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))]),
}


def check_structure(element: ET.Element, order: list[str], required: set[str]) -> None:
    """Namespace, required elements, schema order, CAP time syntax, recursively."""
    names = []
    for child in element:
        assert child.tag.startswith(NS), child.tag
        name = child.tag[len(NS):]
        names.append(name)
        if name in TIMES:
            assert CAP_TIME.match(child.text or ""), (name, child.text)
        if name == "info":
            check_structure(child, INFO_ORDER, {"category", "event", "urgency", "severity", "certainty"})
        elif name == "area":
            check_structure(child, AREA_ORDER, {"areaDesc"})
        elif name in ("eventCode", "geocode"):
            assert [c.tag for c in child] == [NS + "valueName", NS + "value"]
    assert required <= set(names), (required - set(names))
    positions = [order.index(n) for n in names]
    assert positions == sorted(positions), names


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_xml_alert_xml_keeps_every_mapped_field(name: str) -> None:
    document = DOCUMENTS[name]()
    (fields,) = validated(document)
    written = alert_xml(Alert.model_validate(fields))
    root = ET.fromstring(written)
    assert root.tag == NS + "alert"
    check_structure(root, ALERT_ORDER, {"identifier", "sender", "sent", "status", "msgType", "scope"})
    assert written.startswith(b"<?xml") and b'xmlns="urn:oasis:names:tc:emergency:cap:1.2"' in written
    (again,) = parse_cap(written)
    assert again == parse_cap(document)[0]
    # Written twice, byte for byte the same: feeds do not churn.
    assert alert_xml(Alert.model_validate(again)) == written


def test_times_are_written_as_cap_wants_them() -> None:
    (fields,) = validated(cap_alert("urn:veille:out:2"))
    alert = Alert.model_validate({**fields, "sent": datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)})
    sent = ET.fromstring(alert_xml(alert)).find(NS + "sent")
    assert sent is not None and sent.text == "2026-03-01T10:00:00+00:00"  # no fraction, no Z


def test_atom_feed_is_read_back_by_the_importer() -> None:
    # Built once: a document made again a second later would carry other times.
    documents = [make() for make in DOCUMENTS.values()]
    alerts = [Alert.model_validate(validated(d)[0]) for d in documents]
    rows: list[dict[str, Any]] = [{"cap_json": a.model_dump_json()} for a in alerts]
    body = atom_feed(rows, title="t", feed_id="urn:veille:cap:feed:35401",
                     self_url="http://hub/cap/feed.atom?municipality=35401", base_url="http://hub")
    feed = ET.fromstring(body)
    assert feed.tag == ATOM + "feed"
    for name in ("id", "title", "updated"):
        assert feed.find(ATOM + name) is not None
    entries = feed.findall(ATOM + "entry")
    assert len(entries) == 2
    for entry, alert in zip(entries, alerts, strict=True):
        for name in ("id", "title", "updated", "author"):
            assert entry.find(ATOM + name) is not None, name
        link = entry.find(ATOM + "link")
        assert link is not None and link.get("type") == "application/cap+xml"
        assert link.get("href") == f"http://hub/cap/alerts/{alert_key(alert.sender, alert.identifier)}.xml"
    assert parse_cap(body) == [parse_cap(d)[0] for d in documents]
    empty = ET.fromstring(atom_feed([], title="t", feed_id="urn:x", self_url="u", base_url="b"))
    assert empty.findall(ATOM + "entry") == [] and empty.find(ATOM + "updated") is not None


def test_a_row_stored_before_migration_0003_is_served_from_its_summary() -> None:
    row = {"identifier": "old-1", "sender": "pref35", "sent": datetime(2026, 2, 1, 8, 0),
           "status": "Actual", "msg_type": "Alert", "event": "Crue", "category": "flood",
           "severity": "Severe", "urgency": "Immediate", "headline": None,
           "municipalities": ["35401", "35402"], "references": [], "expires": None, "cap_json": None}
    (alert,) = parse_cap(alert_xml(row_alert(row)))
    assert (alert["identifier"], alert["sent"]) == ("old-1", datetime(2026, 2, 1, 8, 0, tzinfo=UTC))
    (info,) = alert["infos"]
    assert info["category"] == ["Other"] and info["certainty"] == "Unknown"
    assert [g["value"] for g in info["areas"][0]["geocodes"]] == ["35401", "35402"]


@pytest.mark.parametrize(("sender", "identifier"), [("a@b.fr", "urn:x/y:1"), ("KSTO@NWS.NOAA.GOV", "é")])
def test_alert_keys_round_trip(sender: str, identifier: str) -> None:
    key = alert_key(sender, identifier)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key) and parse_key(key) == (sender, identifier)


@pytest.mark.parametrize("key", ["%%", "YQ", "LGI", "_-_-"])  # bad base64, no comma, empty sender
def test_bad_alert_keys(key: str) -> None:
    assert parse_key(key) is None
