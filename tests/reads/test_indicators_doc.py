"""docs/indicators.md, checked: every documented definition against a real chDB store.

A small hand-made dataset (the worked example of the document) goes through the sink's
own row conversion into an embedded chDB store; the expected values are computed BY HAND
below (literal numbers, with the arithmetic in a comment), never by re-running the SQL.

Cell: municipalities 35401 and 35402, period [D, D+2) in local days (Europe/Paris), D ten
days ago. Times are Paris local times.

Incidents (declared municipality, category, channel, reported):
  i1  35401 flood     app     D   10:00   mairie-35401 stormwater + public_works (F), sdis35 (F)
  i2  35401 flood     phone   D   11:00   syndicat stormwater (T), sdis35 (F)
  i3  35402 burglary  app     D   12:00   pm-35401 (T)              -> rejected by pm-35401
  i4  35402 burglary  app     D+1 00:30   pm-35402 (F)              (= D 23:30 UTC)
  i7  35402 wildfire  sensor  D   14:00   sdis35 (F)
  i5  35401 graffiti  web     D+2 09:00   mairie-35401 (F)          outside the period
  i6  35403 flood     app     D   10:00   syndicat (T)              outside the cell
  i1 is stored twice more (a replay under another batch token, a re-routing later).
Status events (minutes after the report):
  i1  sdis35 received +1, acknowledged +10, on_site +20, resolved +60
      mairie-35401 acknowledged +30;  pm-35402 (not dispatched) resolved +70
  i2  sdis35 dispatched +5, resolved +45, reopened +50;  syndicat received +2
  i3  pm-35401 rejected +15
  i7  sdis35 acknowledged +40
  i6  sdis35 acknowledged +1 (outside the cell);  an unknown incident: sdis35 resolved
Alerts (sender/identifier, status, severity, affected municipalities, sent):
  a1 Actual Severe [35401, 35402] D 08:00 (stored twice: replay), dispatch cross-boundary
  a2 Actual Moderate [35401] D+1 09:00;  a3 Exercise [35401] D;  a4 Actual [35403] D
  a5 Actual Severe [35402] D+2 09:00 (outside the period)
Delivery receipts (dispatch, agency, method: attempts as "end of attempt (latency) outcome"):
  d1 i1 sdis35 webhook   10:00:03 (1 s) retry 503;  10:00:32 (0.5 s) delivered        -> 30 s
  d1 i1 sdis35 email     10:00:04 (1 s) failed 550;  10:35:00 (1 s) undelivered 550
  d2 i2 sdis35 webhook   11:00:02.5 (0.5 s) delivered (stored twice)                  -> 0.5 s
  d3 i7 sdis35 webhook   14:00:04 (2 s) retry;  14:02:02 (1 s) delivered;  14:05:00 retry 503
                                                                                       -> 120 s
  d4 i1 mairie webhook   10:00:03 (1 s) delivered                                     -> 1 s
  d4 i1 mairie email     10:00:10 (10 s) retry 451;  10:05:00 retry 451;  10:40:00 undelivered 451
  d5 i2 syndicat webhook 11:00:03 (1 s) disabled 410
  d6 a1 syndicat webhook 08:00:03 (1 s) failed 400;  08:05:03 (1 s) failed 400
  d7 i3 pm-35401 open311 12:00:13 (10 s) retry (timeout)
  d8 i4 pm-35402 email   D+1 00:30:04 (1 s) delivered 250                             -> 1 s
  d9 i6 syndicat webhook 10:00:03 (1 s) delivered (an incident of 35403)              -> 1 s
  d10 pm-plessis-tremel webhook D 10:00 undelivered (a body of no event of the cell)
  d11 i5 mairie email    D+2 09:00:04 (1 s) delivered (first attempt after the period)
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from paths import ROOT
from sink_helpers import chdb_store, routed_incident, status_update

from veille.reads.indicators import Cell, compute
from veille.schemas.models import (
    DeadLetter,
    DeliveryReceipt,
    DispatchTarget,
    RoutedAlert,
    RoutedIncident,
    StatusUpdate,
)
from veille.sinks.rows import to_rows
from veille.sinks.store import ChdbStore

PARIS = ZoneInfo("Europe/Paris")
D = datetime.now(UTC).date() - timedelta(days=10)
DOC = ROOT / "docs" / "indicators.md"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A Paris local time, as the UTC instant the records carry."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def target(agency: str, service: str, cross: bool, rule: str = "r") -> DispatchTarget:
    return DispatchTarget(agency_id=agency, service=service, rule=rule, cross_boundary=cross)


def incident(i: int, municipality: str, category: str, channel: str, reported: datetime,
             *dispatches: DispatchTarget) -> RoutedIncident:
    return routed_incident(i, municipality=municipality, category=category, channel=channel,
                           occurred_at=reported - timedelta(minutes=5), reported_at=reported,
                           routed_at=reported + timedelta(seconds=2), dispatches=list(dispatches))


def alert(identifier: str, status: str, severity: str, municipalities: list[str], sent: datetime,
          cross: bool = False) -> RoutedAlert:
    return RoutedAlert(
        identifier=identifier, sender="pref35@example.org", sent=sent, status=status, msg_type="Alert",
        event="Crue", category="Met", severity=severity, urgency="Immediate", headline=None,
        municipalities=municipalities, routed_at=sent + timedelta(seconds=1),
        dispatches=[target("syndicat-eaux-veille", "stormwater", cross, "alert-flood")])


D1, D2 = D + timedelta(days=1), D + timedelta(days=2)
I1 = incident(1, "35401", "flood", "app", at(D, 10), target("mairie-35401", "stormwater", False),
              target("mairie-35401", "public_works", False), target("sdis35", "fire_rescue", False))
I2 = incident(2, "35401", "flood", "phone", at(D, 11), target("syndicat-eaux-veille", "stormwater", True),
              target("sdis35", "fire_rescue", False))
I3 = incident(3, "35402", "burglary", "app", at(D, 12), target("pm-35401", "municipal_police", True))
I4 = incident(4, "35402", "burglary", "app", at(D1, 0, 30), target("pm-35402", "municipal_police", False))
I7 = incident(7, "35402", "wildfire", "sensor", at(D, 14), target("sdis35", "fire_rescue", False))
I5 = incident(5, "35401", "graffiti", "web", at(D2, 9), target("mairie-35401", "public_works", False))
I6 = incident(6, "35403", "flood", "app", at(D, 10), target("syndicat-eaux-veille", "stormwater", True))
UNKNOWN = incident(99, "35401", "flood", "app", at(D, 10))  # never stored: only a status about it

STATUS: list[StatusUpdate] = [
    status_update(I1, "received", 1), status_update(I1, "acknowledged", 10),
    status_update(I1, "on_site", 20), status_update(I1, "resolved", 60),
    status_update(I1, "acknowledged", 30, agency="mairie-35401"),
    status_update(I1, "resolved", 70, agency="pm-35402"),
    status_update(I2, "dispatched", 5), status_update(I2, "resolved", 45), status_update(I2, "reopened", 50),
    status_update(I2, "received", 2, agency="syndicat-eaux-veille"),
    status_update(I3, "rejected", 15, agency="pm-35401"),
    status_update(I7, "acknowledged", 40),
    status_update(I6, "acknowledged", 1), status_update(UNKNOWN, "resolved", 3),
]
A1 = alert("a1", "Actual", "Severe", ["35401", "35402"], at(D, 8), cross=True)
ALERTS = [A1, alert("a2", "Actual", "Moderate", ["35401"], at(D1, 9)),
          alert("a3", "Exercise", "Severe", ["35401"], at(D, 9)),
          alert("a4", "Actual", "Severe", ["35403"], at(D, 9)),
          alert("a5", "Actual", "Severe", ["35402"], at(D2, 9))]
CELL = Cell(municipalities=["35401", "35402"], start=D, end=D2)


def dispatch(n: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{n:012d}")


def receipt(n: int, agency: str, method: str, attempt: int, end: datetime, latency_ms: int, outcome: str,
            code: int | None = None, reply: str | None = None) -> DeliveryReceipt:
    return DeliveryReceipt(dispatch_id=dispatch(n), agency_id=agency, method=method, attempt=attempt,
                           outcome=outcome, status_code=code, reply=reply, latency_ms=latency_ms, at=end)


def sec(day: date, hour: int, minute: int, second: float) -> datetime:
    return at(day, hour, minute) + timedelta(seconds=second)


MAILBOX = "5.1.1 mailbox unavailable"
D2_RECEIPT = receipt(2, "sdis35", "webhook", 1, sec(D, 11, 0, 2.5), 500, "delivered", 200)
RECEIPTS = [
    receipt(1, "sdis35", "webhook", 1, sec(D, 10, 0, 3), 1000, "retry", 503, "Service Unavailable"),
    receipt(1, "sdis35", "webhook", 2, sec(D, 10, 0, 32), 500, "delivered", 200),
    receipt(1, "sdis35", "email", 1, sec(D, 10, 0, 4), 1000, "failed", 550, MAILBOX),
    receipt(1, "sdis35", "email", 2, sec(D, 10, 35, 0), 1000, "undelivered", 550, MAILBOX),
    D2_RECEIPT,
    receipt(3, "sdis35", "webhook", 1, sec(D, 14, 0, 4), 2000, "retry", None, "timeout"),
    receipt(3, "sdis35", "webhook", 2, sec(D, 14, 2, 2), 1000, "delivered", 200),
    receipt(3, "sdis35", "webhook", 3, sec(D, 14, 5, 0), 1000, "retry", 503),
    receipt(4, "mairie-35401", "webhook", 1, sec(D, 10, 0, 3), 1000, "delivered", 204),
    receipt(4, "mairie-35401", "email", 1, sec(D, 10, 0, 10), 10_000, "retry", 451, "4.7.1 greylisted"),
    receipt(4, "mairie-35401", "email", 2, sec(D, 10, 5, 0), 1000, "retry", 451, "4.7.1 greylisted"),
    receipt(4, "mairie-35401", "email", 3, sec(D, 10, 40, 0), 1000, "undelivered", 451, "4.7.1 greylisted"),
    receipt(5, "syndicat-eaux-veille", "webhook", 1, sec(D, 11, 0, 3), 1000, "disabled", 410, "Gone"),
    receipt(6, "syndicat-eaux-veille", "webhook", 1, sec(D, 8, 0, 3), 1000, "failed", 400, "Bad Request"),
    receipt(6, "syndicat-eaux-veille", "webhook", 2, sec(D, 8, 5, 3), 1000, "failed", 400, "Bad Request"),
    receipt(7, "pm-35401", "open311", 1, sec(D, 12, 0, 13), 10_000, "retry", None, "timeout after 10 s"),
    receipt(8, "pm-35402", "email", 1, sec(D1, 0, 30, 4), 1000, "delivered", 250, "2.0.0 Ok: queued"),
    receipt(9, "syndicat-eaux-veille", "webhook", 1, sec(D, 10, 0, 3), 1000, "delivered", 200),
    receipt(10, "pm-plessis-tremel", "webhook", 1, sec(D, 10, 0, 0), 1000, "undelivered", 500),
    receipt(11, "mairie-35401", "email", 1, sec(D2, 9, 0, 4), 1000, "delivered", 250),
]


def insert(store: ChdbStore, records: list[Any], token: str) -> None:
    for table, rows in to_rows(records, datetime.now(UTC)).items():
        if rows.num_rows:
            store.insert(table, rows, f"{table}|{token}")


@pytest.fixture(scope="module")
def indicators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Computed, then the store is closed: chDB opens one store path per process at a time.
    with chdb_store(tmp_path_factory.mktemp("doc") / "chdb") as store:
        insert(store, [I1, I2, I3, I4, I5, I6, I7, *STATUS, *ALERTS, *RECEIPTS], "batch-1")
        # Re-sent events: the same i1, a1 and one receipt replayed under another batch token, and
        # i1 re-routed later (a restarted router routes it again: same id, later routed_at).
        insert(store, [I1, A1, D2_RECEIPT], "batch-2")
        insert(store, [I1.model_copy(update={"routed_at": I1.routed_at + timedelta(minutes=3)})], "batch-3")
        one_day = compute(store, Cell(municipalities=["35401", "35402"], start=D, end=D1))
        return {"cell": compute(store, CELL), "one_day": one_day}


def test_the_document_exists_and_names_every_indicator() -> None:
    text = DOC.read_text()
    for heading in ("Reports", "Cross-boundary share", "Time to acknowledge and to resolve",
                    "Open incidents", "Alerts per municipality", "Delivery to the bodies", "Delivery time"):
        assert f"## {heading}" in text, heading
    for source in ("reports_daily", "dispatch_daily", "incident_lifecycle", "incidents FINAL",
                   "dispatches FINAL", "alerts_daily", "delivery_receipts FINAL"):
        assert source in text, source


def test_reports(indicators: dict[str, Any]) -> None:
    rep = indicators["cell"]["reports"]
    # i1, i2, i3, i4, i7 (i5 after the period, i6 outside the cell; i1 stored 3 times counts once)
    assert rep["total"] == 5
    assert rep["by_municipality"] == {"35401": 2, "35402": 3}  # i1 i2 | i3 i4 i7
    assert rep["by_category"] == {"burglary": 2, "flood": 2, "wildfire": 1}  # i3 i4 | i1 i2 | i7
    assert rep["by_channel"] == {"app": 3, "phone": 1, "sensor": 1}  # i1 i3 i4 | i2 | i7
    assert rep["channel_share"] == {"app": 0.6, "phone": 0.2, "sensor": 0.2}  # 3/5, 1/5, 1/5
    # The rejected i3 is still a report. Local days: i4 (D+1 00:30 Paris, D 23:30 UTC) is
    # not a report of day D.
    assert indicators["one_day"]["reports"]["total"] == 4  # i1 i2 i3 i7


def test_cross_boundary_share(indicators: dict[str, Any]) -> None:
    cb = indicators["cell"]["cross_boundary"]
    # (incident, agency) pairs: i1 mairie-35401 (two services: one pair), i1 sdis35,
    # i2 syndicat (cross), i2 sdis35, i3 pm-35401 (cross), i4 pm-35402, i7 sdis35 = 7, 2 cross.
    # Alert dispatches (a1 is cross-boundary) are not counted.
    assert (cb["dispatches"], cb["cross_boundary"]) == (7, 2)
    assert cb["share"] == 0.2857  # 2 / 7 = 0.285714...
    assert cb["by_agency"] == [
        {"agency_id": "mairie-35401", "dispatches": 1, "cross_boundary": 0, "share": 0.0},
        {"agency_id": "pm-35401", "dispatches": 1, "cross_boundary": 1, "share": 1.0},
        {"agency_id": "pm-35402", "dispatches": 1, "cross_boundary": 0, "share": 0.0},
        {"agency_id": "sdis35", "dispatches": 3, "cross_boundary": 0, "share": 0.0},  # i1 i2 i7
        {"agency_id": "syndicat-eaux-veille", "dispatches": 1, "cross_boundary": 1, "share": 1.0},
    ]
    # 35401: i1 x2 agencies + i2 x2 = 4, 1 cross (i2 syndicat); 35402: i3 i4 i7 = 3, 1 cross (i3).
    assert cb["by_municipality"] == [
        {"municipality": "35401", "dispatches": 4, "cross_boundary": 1, "share": 0.25},
        {"municipality": "35402", "dispatches": 3, "cross_boundary": 1, "share": 0.3333},
    ]
    assert indicators["one_day"]["cross_boundary"]["dispatches"] == 6  # without i4


def test_time_to_acknowledge_and_to_resolve(indicators: dict[str, Any]) -> None:
    times = {r["agency_id"]: r for r in indicators["cell"]["response_times"]}
    # pm-35402 never got i4's status events (none sent) but reported i1 resolved: any agency
    # sending a status about an incident of the cell is listed. i6 and the unknown incident
    # are not incidents of the cell.
    assert sorted(times) == ["mairie-35401", "pm-35401", "pm-35402", "sdis35", "syndicat-eaux-veille"]
    # sdis35 first actions: i1 +10 min (received +1 is not an action) = 600 s, i2 dispatched
    # +5 = 300 s, i7 +40 = 2400 s. Sorted [300, 600, 2400]: p50 = value at floor(0.5*3) = 1
    # -> 600, p90 = value at floor(0.9*3) = 2 -> 2400. First resolutions: i1 +60 = 3600 s,
    # i2 +45 = 2700 s (reopened afterwards: still its first resolution). Sorted [2700, 3600]:
    # p50 = index floor(0.5*2) = 1 -> 3600 (no interpolation), p90 = index 1 -> 3600.
    assert times["sdis35"] == {"agency_id": "sdis35", "incidents": 3, "acknowledged": 3,
                               "ack_p50_s": 600.0, "ack_p90_s": 2400.0,
                               "resolved": 2, "resolve_p50_s": 3600.0, "resolve_p90_s": 3600.0}
    # A rejection is an action (acknowledged at +15 = 900 s) but not a resolution.
    assert times["pm-35401"] == {"agency_id": "pm-35401", "incidents": 1, "acknowledged": 1,
                                 "ack_p50_s": 900.0, "ack_p90_s": 900.0,
                                 "resolved": 0, "resolve_p50_s": None, "resolve_p90_s": None}
    assert times["mairie-35401"]["ack_p50_s"] == 1800.0  # +30 min
    assert (times["pm-35402"]["acknowledged"], times["pm-35402"]["resolve_p50_s"]) == (1, 4200.0)  # +70
    # Only "received": listed, never acknowledged.
    assert (times["syndicat-eaux-veille"]["incidents"], times["syndicat-eaux-veille"]["acknowledged"],
            times["syndicat-eaux-veille"]["ack_p50_s"]) == (1, 0, None)


def test_open_incidents(indicators: dict[str, Any]) -> None:
    # Dispatched (incident, agency) pairs of the cell/period; open unless the agency's latest
    # status is resolved or rejected. sdis35: i1 resolved (closed), i2 reopened (open), i7
    # acknowledged (open) -> 3, 2. mairie-35401 i1 acknowledged (open); pm-35401 i3 rejected
    # (closed); pm-35402 i4 no status (open; its "resolved" on i1 closes nothing: not
    # dispatched to it); syndicat i2 received (open).
    assert indicators["cell"]["open_incidents"] == [
        {"agency_id": "mairie-35401", "dispatched": 1, "open": 1},
        {"agency_id": "pm-35401", "dispatched": 1, "open": 0},
        {"agency_id": "pm-35402", "dispatched": 1, "open": 1},
        {"agency_id": "sdis35", "dispatched": 3, "open": 2},
        {"agency_id": "syndicat-eaux-veille", "dispatched": 1, "open": 1},
    ]


def test_alerts_per_municipality(indicators: dict[str, Any]) -> None:
    alerts = indicators["cell"]["alerts"]
    # Actual only (a3 is an Exercise), affected municipalities in the cell (a4: 35403), sent in
    # the period (a5: D+2); a1 stored twice counts once, once for EACH affected municipality.
    # 35401: a1 + a2 = 2; 35402: a1 = 1.
    assert alerts["total_by_municipality"] == {"35401": 2, "35402": 1}
    assert alerts["rows"] == [
        {"municipality": "35401", "severity": "Moderate", "alerts": 1},
        {"municipality": "35401", "severity": "Severe", "alerts": 1},
        {"municipality": "35402", "severity": "Severe", "alerts": 1},
    ]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


def test_delivery_to_the_bodies(indicators: dict[str, Any]) -> None:
    rows = {(r["agency_id"], r["method"]): r for r in indicators["cell"]["delivery"]["by_agency_method"]}
    # Bodies of the cell's events (i1 i2 i3 i4 i7, a1): pm-plessis-tremel (d10) is none of them;
    # d11 was first tried after the period. Per (dispatch, method) pair, the state now.
    assert sorted(rows) == [("mairie-35401", "email"), ("mairie-35401", "webhook"), ("pm-35401", "open311"),
                            ("pm-35402", "email"), ("sdis35", "email"), ("sdis35", "webhook"),
                            ("syndicat-eaux-veille", "webhook")]

    def states(key: tuple[str, str]) -> tuple[int, ...]:
        r = rows[key]
        return r["dispatches"], r["delivered"], r["pending"], r["failed"], r["disabled"], r["undelivered"]

    # sdis35 webhook: d1 delivered at its 2nd attempt, d2 (stored twice: once), d3 delivered at
    # its 2nd attempt (a later retry does not undo it) -> 3 dispatches, 3 delivered.
    assert states(("sdis35", "webhook")) == (3, 3, 0, 0, 0, 0)
    assert states(("sdis35", "email")) == (1, 0, 0, 0, 0, 1)  # d1: latest attempt undelivered
    assert states(("mairie-35401", "webhook")) == (1, 1, 0, 0, 0, 0)  # d4
    assert states(("mairie-35401", "email")) == (1, 0, 0, 0, 0, 1)  # d4: retried, then undelivered
    assert states(("pm-35401", "open311")) == (1, 0, 1, 0, 0, 0)  # d7: being retried
    # d4's webhook arrived but not its e-mail: each method counts on its own.
    # syndicat: d9 delivered (an incident of 35403: a receipt does not name its event), d6
    # failed twice, d5 answered 410 -> 3 dispatches: 1 delivered, 1 failed, 1 disabled.
    assert states(("syndicat-eaux-veille", "webhook")) == (3, 1, 0, 1, 1, 0)
    # Failing since: the first attempt of the oldest failed, disabled or undelivered pair:
    # d6 started at 08:00:02 (ended 08:00:03 after 1 s); d5 at 11:00:02.
    assert rows[("syndicat-eaux-veille", "webhook")]["failing_since"] == iso(sec(D, 8, 0, 2))
    assert rows[("syndicat-eaux-veille", "webhook")]["undelivered_since"] is None
    # d4's e-mail started at 10:00:00 (its first attempt ended at 10:00:10 after 10 s).
    assert rows[("mairie-35401", "email")]["undelivered_since"] == iso(sec(D, 10, 0, 0))
    assert rows[("sdis35", "webhook")]["failing_since"] is None
    # Oldest undelivered per body, the oldest first: the mairie's d4 e-mail (10:00:00), then
    # sdis35's d1 e-mail (first attempt 10:00:03).
    assert indicators["cell"]["delivery"]["oldest_undelivered"] == [
        {"agency_id": "mairie-35401", "undelivered": 1, "since": iso(sec(D, 10, 0, 0)),
         "dispatch_id": str(dispatch(4)), "method": "email"},
        {"agency_id": "sdis35", "undelivered": 1, "since": iso(sec(D, 10, 0, 3)),
         "dispatch_id": str(dispatch(1)), "method": "email"}]
    # Local days: i4 (D+1 00:30 Paris) is not an event of day D, so pm-35402 is not a body of the
    # one-day cell, and d8 (first attempt D+1 00:30:03 Paris = D 23:30 UTC) not a delivery of it.
    one_day = {(r["agency_id"], r["method"]) for r in indicators["one_day"]["delivery"]["by_agency_method"]}
    assert one_day == set(rows) - {("pm-35402", "email")}


def test_delivery_time(indicators: dict[str, Any]) -> None:
    rows = {(r["agency_id"], r["method"]): r for r in indicators["cell"]["delivery"]["by_agency_method"]}
    # From the start of the first attempt (end minus latency) to the end of the first accepted one:
    # d1 10:00:02 -> 10:00:32 = 30 s; d2 11:00:02 -> 11:00:02.5 = 0.5 s; d3 14:00:02 -> 14:02:02 =
    # 120 s. Sorted [0.5, 30, 120]: p50 = index floor(0.5*3) = 1 -> 30 s, p90 = index 2 -> 120 s.
    sdis = rows[("sdis35", "webhook")]
    assert (sdis["delivery_p50_s"], sdis["delivery_p90_s"]) == (30.0, 120.0)
    # d4 webhook 10:00:02 -> 10:00:03 = 1 s; d8 1 s; d9 1 s (the syndicate's only delivery).
    for key in (("mairie-35401", "webhook"), ("pm-35402", "email"), ("syndicat-eaux-veille", "webhook")):
        assert (rows[key]["delivery_p50_s"], rows[key]["delivery_p90_s"]) == (1.0, 1.0), key
    # Nothing delivered, no time.
    assert rows[("mairie-35401", "email")]["delivery_p50_s"] is None
    assert rows[("pm-35401", "open311")]["delivery_p90_s"] is None


def test_dead_letters_and_unroutable_events_never_reach_the_store() -> None:
    # The router dead-letters them (reason "unroutable", "validation_error", ...): the sink's
    # row conversion has no place for them, so no indicator can count them.
    letter = DeadLetter(reason="unroutable", message="outside_territory: point 47.2,-3.1 is outside the "
                        "territory", component="router", source_topic="veille.intake.35401",
                        source_partition=0, source_offset=1, failed_at=datetime.now(UTC))
    with pytest.raises(TypeError, match="does not store DeadLetter"):
        to_rows([letter], datetime.now(UTC))


def test_caveat_a_rerouted_incident_whose_category_changed_counts_twice(tmp_path: Path) -> None:
    # Documented limitation: the daily views keep every routed version; the incidents table
    # keeps only the latest. i2 routed again, later, as a theft: one incident, two reports.
    with chdb_store(tmp_path / "chdb") as store:
        insert(store, [I2], "a")
        insert(store, [I2.model_copy(update={"category": "theft",
                                             "routed_at": I2.routed_at + timedelta(minutes=1)})], "b")
        rep = compute(store, CELL)["reports"]
        assert rep["by_category"] == {"flood": 1, "theft": 1}
        assert rep["total"] == 2
        rows = store.query("SELECT category FROM veille.incidents FINAL")
        assert rows == [{"category": "theft"}]
