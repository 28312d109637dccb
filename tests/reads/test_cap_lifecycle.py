"""CAP Update/Cancel/expiry in the store and the CAP feed out, through the real broker, router and sink.

CAP XML → intake alerts topic → router (child process) → routed topic → sink pipeline →
chDB → ``add_cap_routes`` (its own aiohttp app): what an agency's CAP consumer reads.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cap_helpers import cap_alert, new_id, publish_cap, reference, routed_alerts, routed_hub
from sink_helpers import chdb_store

from veille.producers.cap_xml import parse_cap
from veille.reads import alert_state
from veille.reads.cap_feed import add_cap_routes, alert_key
from veille.sinks.pipeline import SinkPipeline
from veille.sinks.steps import RetryPolicy
from veille.sinks.store import ChdbStore

pytestmark = pytest.mark.kafka


def _fetch(store: ChdbStore, *paths: str) -> list[tuple[int, str, bytes]]:
    async def main() -> list[tuple[int, str, bytes]]:
        app = web.Application()
        add_cap_routes(app, store)
        out = []
        async with TestClient(TestServer(app)) as client:
            for path in paths:
                resp = await client.get(path)
                out.append((resp.status, resp.content_type, await resp.read()))
        return out

    return asyncio.run(main())


def test_update_cancel_expiry_and_the_feed(kafka: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    sent = now - timedelta(minutes=30)
    ids = {k: new_id(k) for k in ("first", "cancelled", "expired", "update", "cancel", "kept", "other",
                                  "exercise")}
    docs = {
        "first": cap_alert(ids["first"], sent=sent),
        "cancelled": cap_alert(ids["cancelled"], sent=sent),
        "expired": cap_alert(ids["expired"], sent=sent, expires=now - timedelta(minutes=1)),
        "update": cap_alert(ids["update"], msg_type="Update", references=[reference(ids["first"], sent)],
                            headline="Vigilance crues orange"),
        "cancel": cap_alert(ids["cancel"], msg_type="Cancel", references=[reference(ids["cancelled"], sent)]),
        "kept": cap_alert(ids["kept"], sent=sent - timedelta(minutes=1)),
        "other": cap_alert(ids["other"], municipalities=("35406",)),
        "exercise": cap_alert(ids["exercise"], status="Exercise"),
    }
    # Another sender cannot withdraw the prefecture's alert: "kept" stays in force.
    foreign = new_id("foreign")
    docs["foreign"] = cap_alert(foreign, msg_type="Cancel", sender="someone@else.example",
                                references=[reference(ids["kept"], sent - timedelta(minutes=1))])
    with routed_hub(kafka.settings, tmp_path) as settings:
        publish_cap(settings, *docs.values())
        routed = routed_alerts(settings, {*ids.values(), foreign})
        # The same alert again (same identifier, sender, sent): routed once, stored once.
        publish_cap(settings, docs["first"])
        marker = new_id("marker")
        publish_cap(settings, cap_alert(marker, municipalities=("35406",)))
        time.sleep(1.0)
        routed = routed_alerts(settings, {*ids.values(), foreign, marker})
        assert sum(a["identifier"] == ids["first"] for a in routed) == 1
        update = next(a for a in routed if a["identifier"] == ids["update"])
        assert update["references"] == [reference(ids["first"], sent)] and update["cap_json"]

        with chdb_store(tmp_path / "store") as store:
            stats = SinkPipeline(settings, store, retry=RetryPolicy(0.1, 2, 0.4)).run(
                until=lambda: False, max_idle=2.0)
            assert stats.dead_lettered == 0 and stats.messages == len(routed)
            raw = store.query("SELECT count() AS n FROM veille.alerts WHERE identifier = {i:String}",
                              {"i": ids["first"]})
            assert raw[0]["n"] == 1

            states = {k: alert_state.state(store, "vigilance@pref35.gouv.fr", i) for k, i in ids.items()}
            assert states == {"first": "superseded", "cancelled": "cancelled", "expired": "expired",
                              "update": "active", "cancel": "closing", "kept": "active", "other": "active",
                              "exercise": "active"}
            assert alert_state.state(store, "someone@else.example", foreign) == "closing"
            active = alert_state.active_alerts(store, "35401")
            assert [r["identifier"] for r in active] == [ids["update"], ids["kept"]]  # newest first

            key = alert_key("vigilance@pref35.gouv.fr", ids["update"])
            (feed, one, cancelled, everything, bad_muni, bad_key, unknown) = _fetch(
                store, "/cap/feed.atom?municipality=35401", f"/cap/alerts/{key}.xml",
                f"/cap/alerts/{alert_key('vigilance@pref35.gouv.fr', ids['cancelled'])}.xml",
                "/cap/feed.atom", "/cap/feed.atom?municipality=3540", "/cap/alerts/%25%25.xml",
                f"/cap/alerts/{alert_key('nobody', 'nothing')}.xml")

    assert feed[:2] == (200, "application/atom+xml")
    # The feed is a CAP Atom feed our own importer reads back, alert for alert, field for field.
    served = {a["identifier"]: a for a in parse_cap(feed[2])}
    assert list(served) == [ids["update"], ids["kept"]]
    for name in ("update", "kept"):
        assert served[ids[name]] == parse_cap(docs[name])[0]
    assert one[:2] == (200, "application/cap+xml") and parse_cap(one[2]) == parse_cap(docs["update"])
    # A closed alert is still served by its link (consumers resolve references), not in the feed.
    assert cancelled[0] == 200 and parse_cap(cancelled[2])[0]["identifier"] == ids["cancelled"]
    territory_wide = {a["identifier"] for a in parse_cap(everything[2])}
    assert territory_wide == {ids["update"], ids["kept"], ids["other"], marker}
    assert bad_muni[0] == 400 and bad_key[0] in (400, 404) and unknown[0] == 404
