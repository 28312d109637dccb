"""Helpers of the CAP tests: CAP 1.2 documents written as an authority would, a router on the broker."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub_helpers import HubProcess, hub_settings, read_topics
from paths import FIXTURES

from veille.config import Settings
from veille.producers.cap_xml import validated
from veille.producers.sdk import Publisher
from veille.topics import Topics

SENDER = "vigilance@pref35.gouv.fr"


def cap_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def cap_alert(identifier: str, *, msg_type: str = "Alert", references: list[str] | None = None,
              municipalities: tuple[str, ...] = ("35401",), status: str = "Actual",
              sent: datetime | None = None, expires: datetime | None = None, sender: str = SENDER,
              headline: str = "Vigilance crues jaune") -> str:
    """A CAP 1.2 alert with every element the hub maps (two infos, polygon, circle, geocodes)."""
    sent = sent or datetime.now(UTC) - timedelta(minutes=5)
    expires = expires or datetime.now(UTC) + timedelta(hours=6)
    refs = f"<references>{' '.join(references)}</references>" if references else ""
    geocodes = "".join(f"<geocode><valueName>INSEE</valueName><value>{m}</value></geocode>"
                       for m in municipalities)
    # A second area by shape, inside Montveille (35401) only: kept out of other towns' alerts.
    confluence = ("<area><areaDesc>Confluence</areaDesc>"
                  "<polygon>48.15,-1.7 48.16,-1.7 48.16,-1.69 48.15,-1.7</polygon>"
                  "<circle>48.15,-1.7 0.5</circle></area>") if "35401" in municipalities else ""
    info = f"""<info><language>{{lang}}</language><category>Met</category><category>Env</category>
      <event>Crue</event><urgency>Expected</urgency><severity>Moderate</severity>
      <certainty>Likely</certainty>
      <eventCode><valueName>veille</valueName><value>flood</value></eventCode>
      <effective>{cap_time(sent)}</effective><onset>{cap_time(sent + timedelta(hours=1))}</onset>
      <expires>{cap_time(expires)}</expires>
      <headline>{headline}</headline><instruction>Eloignez-vous des berges.</instruction>
      <area><areaDesc>Vallée de la Veille</areaDesc>{geocodes}</area>{confluence}</info>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{sender}</sender><sent>{cap_time(sent)}</sent>
  <status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}
  {info.replace("{lang}", "fr-FR")}{info.replace("{lang}", "en-GB")}
</alert>"""


def reference(identifier: str, sent: datetime, sender: str = SENDER) -> str:
    return f"{sender},{identifier},{cap_time(sent)}"


def new_id(label: str) -> str:
    return f"urn:veille:test:{label}:{uuid.uuid4().hex[:8]}"


def publish_cap(settings: Settings, *documents: str) -> None:
    with Publisher(settings, client_id="test-cap") as publisher:
        for document in documents:
            for alert in validated(document):
                publisher.publish(alert, record_type="Alert")
        summary = publisher.flush()
    assert summary.ok, summary


@contextmanager
def routed_hub(base: Settings, state_dir: Path) -> Iterator[Settings]:
    """Fresh topics on the session broker and the real router (a child process) routing them."""
    settings = hub_settings(base, state_dir)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        yield settings
    finally:
        router.stop()


def routed_alerts(settings: Settings, wanted: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    """RoutedAlert values on the routed topic, read until every wanted identifier is there."""
    topic = Topics(settings.topic_prefix).routed

    def alerts(out: list[Any]) -> list[dict[str, Any]]:
        return [d.value for _, d in out if d.record_type == "RoutedAlert"]

    out = read_topics(settings, [topic], timeout=timeout,
                      until=lambda out: wanted <= {a["identifier"] for a in alerts(out)})
    found = alerts(out)
    assert wanted <= {a["identifier"] for a in found}, (wanted, [a["identifier"] for a in found])
    return found


# --------------------------------------------------------------------------- CAP documents

SPEC_EXAMPLE = (FIXTURES / "cap" / "cap12-severe-thunderstorm.xml").read_text()
CAP_XML = {"Content-Type": "application/cap+xml"}

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol4;</identifier></alert>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>"""


def today(document: str, identifier: str | None = None) -> str:
    """The spec's example with its 2003 date moved to today (the hub refuses older events)."""
    day = datetime.now(UTC).date().isoformat()
    document = document.replace("2003-06-17T", f"{day}T").replace("14:57:00-07:00", "00:00:00+00:00")
    return document.replace("KSTO1055887203", identifier) if identifier else document


def atom(*alerts: str) -> str:
    entries = "".join(
        f'<entry><id>urn:uuid:{uuid.uuid4()}</id><title>CAP</title><updated>2026-01-01T00:00:00Z</updated>'
        f'<content type="application/cap+xml">{re.sub(r"<[?!].*?>", "", a, flags=re.S)}</content></entry>'
        for a in alerts)
    return f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Alertes</title>{entries}</feed>'
