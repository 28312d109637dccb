"""The console without a broker: filters and the URL, pure SQL builders, privacy of positions,
report suppression, CSV format and access control; then the queries on a real chDB store."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from console_data import DELIVERY, DELIVERY_ORDER, dataset, receipts, routed_alert, selected
from pydantic import ValidationError
from sink_helpers import chdb_store

from veille.reads.console import queries
from veille.reads.console.access import Credentials, auth_middleware, is_loopback
from veille.reads.console.export import BOM, COLUMNS, export_rows, to_csv
from veille.reads.console.filters import ConsoleFilter, parse_filter
from veille.reads.console.report import build_report, shown, shown_duration, shown_share
from veille.reads.console.view import build_view
from veille.sinks.rows import to_rows
from veille.territory import load_territory
from veille.web.i18n import page_texts

TODAY = date(2026, 3, 10)


def test_filter_round_trips_through_the_url_and_defaults_to_thirty_days() -> None:
    f = parse_filter({"municipalities": "35402,35401,35401", "from": "2026-03-01", "to": "2026-03-08",
                      "category": "flood", "status": "open"})
    assert f.municipalities == ["35401", "35402"]
    assert parse_filter(dict(f.query())) == f
    assert f.query_string() == ("municipalities=35401%2C35402&from=2026-03-01&to=2026-03-08"
                                "&category=flood&status=open")
    default = parse_filter({}, today=TODAY)
    assert (default.start, default.end) == (date(2026, 2, 9), date(2026, 3, 11))
    for bad in ({"category": "nope"}, {"channel": "pigeon"}, {"status": "late"}, {"agency": "a b"},
                {"municipalities": "3540"}, {"from": "2026-03-08", "to": "2026-03-01"}, {"from": "x"}):
        with pytest.raises((ValidationError, ValueError)):
            parse_filter(bad, today=TODAY)


def test_builders_bind_every_value_and_hide_exact_positions() -> None:
    f = ConsoleFilter(municipalities=["35401"], start=TODAY, end=date(2026, 3, 11), category="flood",
                      channel="app", agency="sdis35", status="open")
    munis = ["35401", "35402"]
    builders = [queries.by_municipality_sql, queries.grid_sql, queries.cross_boundary_sql,
                queries.alerts_sql, queries.export_sql, queries.response_times_sql,
                queries.delivery_sql, queries.delivery_stuck_sql,
                lambda db, f, m: queries.daily_sql(db, f, m, "channel")]
    for build in builders:
        sql, params = build("vdb", f, munis)
        assert params == {"munis": ["35401"], "start": TODAY, "end": date(2026, 3, 11), "category": "flood",
                          "channel": "app", "agency": "sdis35", "status": "open"}
        for literal in ("35401", "flood", "sdis35", "2026"):
            assert literal not in sql
        assert "vdb." in sql
    assert ConsoleFilter(start=TODAY, end=date(2026, 3, 11)).params(munis)["munis"] == munis
    grid, _ = queries.grid_sql("vdb", f, munis)
    assert "NOT IN ('assault', 'burglary'" in grid and "floor(lat / 0.01)" in grid
    export, _ = queries.export_sql("vdb", f, munis)
    outer = export.split("FROM (", 1)[0]  # what leaves the store: the rounded cell, never lat itself
    assert outer.count("lat") \
        == outer.count("lat IS NULL") + outer.count("floor(lat /") + outer.count("cell_lat")
    with pytest.raises(ValueError):
        queries.daily_sql("vdb", f, munis, "reporter_pseudonym")


def test_report_suppression_rules() -> None:
    assert [shown(n) for n in (0, 1, 4, 5, 12)] == ["< 5", "< 5", "< 5", "5", "12"]
    assert shown_share(2, 10) == "n.d." and shown_share(8, 10) == "n.d." and shown_share(5, 10) == "50\u00a0%"
    assert shown_duration(600.0, 4) == "n.d." and shown_duration(600.0, 5) == "10\u00a0min"
    assert shown_duration(5400.0, 9) == "1,5\u00a0h" and shown_duration(None, 9) == "n.d."
    assert shown_duration(2.4, 9) == "2\u00a0s" and shown_duration(0.4, 9) == "< 1\u00a0s"


def test_csv_has_a_bom_semicolons_and_french_headers() -> None:
    headers = page_texts("console")
    data = to_csv([{c: ("Saint-Méen; la Rivière" if c == "municipality_name" else "x") for c in COLUMNS}],
                  headers)
    assert data.startswith(BOM.encode("utf-8"))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["identifiant", "code_insee", "commune"] and rows[1][2] == "Saint-Méen; la Rivière"


def test_credentials_and_bind_rules() -> None:
    token = Credentials(token="s3cret")
    assert token.accepts("Bearer s3cret") and not token.accepts("Bearer s3cre") and not token.accepts("")
    basic = Credentials(user="cellule", password="pw:1")
    ok = base64.b64encode(b"cellule:pw:1").decode()
    assert basic.accepts(f"Basic {ok}") and not basic.accepts("Basic " + base64.b64encode(b"c:pw").decode())
    assert not basic.accepts("Basic !!!") and not Credentials().configured
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")




def test_access_middleware_answers(tmp_path: Path) -> None:
    import asyncio

    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def run(host: str, creds: Credentials, path: str, authorization: str) -> int:
        mw = auth_middleware(creds, host)
        headers = {"Authorization": authorization} if authorization else {}
        req = make_mocked_request("GET", path, headers=headers)
        resp = await mw(req, ok)
        return resp.status

    cases = [("127.0.0.1", Credentials(), "/console/", "", 200),
             ("0.0.0.0", Credentials(), "/console/", "", 403),
             ("0.0.0.0", Credentials(), "/metrics", "", 200),
             ("0.0.0.0", Credentials(), "/healthz", "", 200),
             ("0.0.0.0", Credentials(token="t"), "/indicators", "", 401),
             ("0.0.0.0", Credentials(token="t"), "/console/export.csv", "Bearer t", 200),
             ("127.0.0.1", Credentials(token="t"), "/stats", "Bearer x", 401)]
    for host, creds, path, auth, expected in cases:
        assert asyncio.run(run(host, creds, path, auth)) == expected, (host, creds, path, auth)


def test_view_export_and_report_on_a_real_store(tmp_path: Path) -> None:
    territory = load_territory()
    known, updates, alert = dataset(TODAY)
    sent, states = receipts(known)
    records = [*(k.incident for k in known), *updates, alert, *sent]
    f_all = ConsoleFilter(start=date(2026, 3, 1), end=date(2026, 3, 12))
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows(records, known[0].incident.routed_at).items():
            store.insert(table, rows, f"{table}|console")
        view = build_view(store, territory, f_all, now=datetime(2026, 3, 11, tzinfo=UTC))
        later = build_view(store, territory, f_all, now=datetime(2026, 3, 18, 12, tzinfo=UTC))
        flood_open = ConsoleFilter(start=f_all.start, end=f_all.end, category="flood", status="open")
        exported = export_rows(store, territory, flood_open)
        by_agency = export_rows(store, territory, f_all.model_copy(update={"agency": "syndicat-eaux-veille"}))
        report = build_report(store, territory, "35401", 2026)
        small = build_report(store, territory, "35405", 2026)
        police = build_view(store, territory, f_all.model_copy(update={"agency": "pm-35401"}),
                            now=datetime(2026, 3, 11, tzinfo=UTC))
    assert view["total"] == len(known)
    resolved = len(selected(known, status="resolved"))
    assert resolved and view["handled"] == {"last_7_days": resolved, "previous_7_days": 0}
    # A week later, the same resolutions are the previous week's.
    assert later["handled"] == {"last_7_days": 0, "previous_7_days": resolved}
    assert {m["insee"]: m["reports"] for m in view["municipalities"]} == {
        code: len(selected(known, municipalities=(code,))) for code in territory.municipalities}
    assert sum(view["by_category"]["flood"]) == len(selected(known, category="flood"))
    assert sum(sum(v) for v in view["by_channel"].values()) == len(known)
    assert len(view["days"]) == 11 and len(view["alerts"]) == 1
    # No cell for the sensitive category, and every cell is a grid centre.
    assaults = len(selected(known, category="assault"))
    assert sum(c["reports"] for c in view["grid"]["cells"]) == len(known) - assaults
    assert {r["id"] for r in exported} == {str(k.incident.id) for k in selected(known, category="flood",
                                                                                 status="open")}
    assert {r["id"] for r in by_agency} == {str(k.incident.id) for k in selected(known, category="flood")}
    assert report["total"] == "12" and small["total"] == "< 5" and small["by_month"][2] == "< 5"

    # Delivery: one section per body with a push method, the undelivered first, then the failing.
    bodies = view["delivery"]["bodies"]
    assert tuple(b["agency_id"] for b in bodies) == DELIVERY_ORDER
    for b in bodies:
        mine = [st for (agency, _, _), st in states.items() if agency == b["agency_id"]]
        assert (b["delivered"], b["pending"], b["failing"], b["undelivered"]) == (
            mine.count("delivered"), mine.count("pending"),
            sum(mine.count(s) for s in ("failed", "disabled", "undelivered")), mine.count("undelivered"))
        (row,) = b["methods"]
        assert row["method"] == DELIVERY[b["agency_id"]][0] and row["dispatches"] == len(mine)
        # The deliveries not accepted, with their state, attempts and last answer.
        assert [(s["dispatch_id"], s["state"]) for s in b["stuck"]] == [
            (d, st) for (a, d, _), st in states.items() if a == b["agency_id"] and st != "delivered"]
    syndicat = bodies[0]
    assert syndicat["undelivered"] == 1 and syndicat["undelivered_since"] == syndicat["failing_since"]
    (stuck,) = syndicat["stuck"]
    assert (stuck["attempts"], stuck["last_code"], stuck["last_reply"]) == (3, 503, "Service Unavailable")
    head = stuck["dispatch_id"].upper()
    assert stuck["ref"] == f"{head[:4]}-{head[4:8]}"  # as the e-mails' "réf."
    assert bodies[-1]["failing_since"] is None and bodies[-1]["stuck"][0]["state"] == "pending"
    # The agency filter keeps that body only.
    assert [b["agency_id"] for b in police["delivery"]["bodies"]] == ["pm-35401"]
    # The report: per body and method serving the town, all their deliveries (a receipt names no
    # town), small counts suppressed. Every delivery took 0.4 s (its one accepted attempt).
    name = {a: territory.agencies[a].name for a in DELIVERY}
    assert report["delivery"] == [
        (name["pm-35401"], "open311", "8", "< 1\u00a0s", "< 5"),
        (name["sdis35"], "email", "6", "< 1\u00a0s", "< 5"),
        (name["syndicat-eaux-veille"], "webhook", "6", "< 1\u00a0s", "< 5")]


def test_ops_increments_count_a_new_reason_from_zero_and_survive_restarts() -> None:
    from veille.reads.console.ops import increments, step_for

    ts = [0, 60, 120, 180]
    result = [
        {"metric": {"reason": "invalid"}, "values": [[0, "5"], [60, "7"], [120, "2"], [180, "2"]]},
        # Created by its first dead letter at t=120: that first one counts.
        {"metric": {"reason": "unroutable"}, "values": [[120, "1"], [180, "3"]]},
        {"metric": {}, "values": [[0, "0"], [180, "NaN"]]},
    ]
    assert increments(result, ts, "reason") == {"invalid": [0.0, 2.0, 2.0, 0.0],
                                                "unroutable": [0.0, 0.0, 1.0, 2.0], "total": [0.0] * 4}
    assert step_for(1) == 60 and step_for(24) == 480 and step_for(720) == 12960


def test_console_serve_without_a_sink(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    import httpx

    known, updates, alert = dataset(TODAY)
    with chdb_store(tmp_path / "chdb") as store:
        records = [*(k.incident for k in known), *updates, alert]
        for table, rows in to_rows(records, known[0].incident.routed_at).items():
            store.insert(table, rows, f"{table}|serve")
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path), "VEILLE_CLICKHOUSE_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", "veille.cli", "console", "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("console: "):
            line = proc.stdout.readline()
            assert line, "console serve exited without serving"
        url = line.split()[1]
        period = {"from": "2026-03-01", "to": "2026-03-12"}
        view = httpx.get(f"{url}api/view", params=period, timeout=30).json()
        assert view["total"] == len(known)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    # A live sink owns the embedded store: serve refuses and names the sink's console.
    (tmp_path / "sink.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": os.getpid()}))
    refused = subprocess.run([sys.executable, "-m", "veille.cli", "console", "serve"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "http://127.0.0.1:9/console/" in refused.stderr


def test_without_a_territory_the_sink_serves_what_it_served_before(tmp_path: Path) -> None:
    import httpx

    with chdb_store(tmp_path / "chdb") as store:
        from veille.reads.app import make_app
        from veille.reads.service import ConsoleServer

        broken = ConsoleServer(make_app(store, None, Credentials(), "127.0.0.1"), "127.0.0.1", 0)
        try:
            assert httpx.get(f"{broken.url}/stats", timeout=30).json()["incidents"] == 0
            assert httpx.get(f"{broken.url}/healthz").status_code == 200
            assert httpx.get(f"{broken.url}/console/").status_code == 404
        finally:
            broken.shutdown()
            broken.server_close()


def test_alerts_show_their_state_and_only_alerts_in_force_are_drawn(tmp_path: Path) -> None:
    """An Update supersedes, a Cancel closes, expiry ends: the console's table says which, and
    only alerts in force keep their area on the map."""
    territory = load_territory()
    at = datetime(2026, 3, 9, 8, tzinfo=UTC)
    sender = "pref35@interieur.gouv.fr"
    first, updated, cancelled = (routed_alert(n, at + timedelta(hours=i)) for i, n in enumerate("abc"))
    update = routed_alert("a2", at + timedelta(hours=3), "Update", (f"{sender},a,{at.isoformat()}",))
    cancel = routed_alert("c2", at + timedelta(hours=4), "Cancel", (f"{sender},c,{at.isoformat()}",))
    expired = routed_alert("d", at, expires=at + timedelta(hours=1))
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows([first, updated, cancelled, update, cancel, expired], at).items():
            store.insert(table, rows, f"{table}|alerts")
        view = build_view(store, territory, ConsoleFilter(start=date(2026, 3, 1), end=date(2026, 3, 12)),
                          now=datetime(2026, 3, 11, tzinfo=UTC))
    states = {a["identifier"]: a["state"] for a in view["alerts"]}
    assert states == {"a": "superseded", "b": "active", "c": "cancelled", "a2": "active", "c2": "closing",
                      "d": "expired"}
    drawn = {a["identifier"]: a["shapes"] for a in view["alerts"] if a["shapes"]}
    assert set(drawn) == {"b", "a2"}
    (ring,) = drawn["b"]["polygons"]
    assert len(ring) == 5 and ring[0] == ring[-1] and drawn["b"]["circles"] == []
    texts = page_texts("console")
    assert all(f"alert_state_{s}" in texts for s in set(states.values()))
