"""The sink stores the cascade's events (migration 0006): counts only, no register content;
a replayed batch doubles nothing; a bad event is a dead letter, not a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sink_helpers import chdb_store

from veille.kafka import Message
from veille.pcs import events as e
from veille.schemas.models import DeadLetter
from veille.sinks.decode import decode
from veille.sinks.rows import to_rows
from veille.topics import PCS_TYPES

NOW = int(datetime.now(UTC).timestamp() * 1000)
PERSON = "3f1c0a2e-0000-4000-8000-00000000beef"
EVENTS = [
    e.ActivationEvent(activation="a1", at=NOW, municipality="35401", source="alert", source_id="cap-1",
                      severity="Severe", representatives=("r1", "r2")),
    e.NotifiedEvent(activation="a1", at=NOW, notification="n1", municipality="35401", owner="r1",
                    target="r1", step=0, channel="email", outcome="delivered"),
    e.NotifiedEvent(activation="a1", at=NOW, notification="n2", municipality="35401", owner="r2",
                    target="r2", step=0, channel="sms", outcome="failed"),
    e.AckEvent(activation="a1", at=NOW, municipality="35401", owner="r1", by="r1"),
    e.CheckEvent(activation="a1", at=NOW, municipality="35401", owner="r1", person=PERSON,
                 status=e.CheckStatus.needs_help),
]


def _msg(value: bytes) -> Message:
    return Message(topic="v.pcs.cascade", partition=0, offset=1, key=b"a1", value=value)


def test_cascade_events_stored_as_counts(tmp_path: Path) -> None:
    decoded = [decode(_msg(e.encode(ev)), expect=PCS_TYPES) for ev in EVENTS]
    assert not any(isinstance(d, DeadLetter) for d in decoded)
    with chdb_store(tmp_path / "chdb") as store:
        for token in ("t1", "t1", "t2"):  # a replayed block, then the same events again
            rows = to_rows(decoded, datetime.now(UTC))["pcs_cascade"]
            store.insert("pcs_cascade", rows, f"pcs_cascade|{token}")
        got = store.query("SELECT kind, count() AS n, countIf(status = 'besoin_aide') AS help "
                          "FROM veille.pcs_cascade FINAL WHERE municipality = '35401' "
                          "GROUP BY kind ORDER BY kind")
        assert {r["kind"]: int(r["n"]) for r in got} == {"activation": 1, "notified": 2,
                                                          "acknowledged": 1, "check": 1}
        dump = str(store.query("SELECT * FROM veille.pcs_cascade"))
        assert PERSON not in dump  # not even the register entry's opaque id


def test_a_bad_cascade_event_is_a_dead_letter() -> None:
    out = decode(_msg(b'{"type": "check", "activation": "a1"}'), expect=PCS_TYPES)
    assert isinstance(out, DeadLetter) and out.reason == "validation_error"


def test_pcs_indicators_from_the_store(tmp_path: Path) -> None:
    from datetime import date, timedelta

    from veille.reads.pcs import pcs_indicators

    later = [e.CheckEvent(activation="a1", at=NOW + 1000, municipality="35401", owner="r1",
                          person=PERSON, status=e.CheckStatus.seen),
             e.CheckEvent(activation="a1", at=NOW, municipality="35401", owner="r1",
                          person="other", status=e.CheckStatus.absent)]
    with chdb_store(tmp_path / "chdb") as store:
        rows = to_rows([*EVENTS, *later], datetime.now(UTC))["pcs_cascade"]
        store.insert("pcs_cascade", rows, "pcs_cascade|x")
        today = datetime.now(UTC).date()
        got = pcs_indicators(store, "35401", today - timedelta(days=1), today + timedelta(days=1))
        # PERSON: needs help, then seen (latest wins); "other": absent.
        assert got == {"activations": 1, "notified": 2, "acknowledged": 1, "to_cell": 0,
                       "checked": 2, "ok": 1, "need_help": 0, "absent": 1}
        assert pcs_indicators(store, "35402", date(2020, 1, 1), date(2030, 1, 1))["activations"] == 0


def test_annual_report_suppresses_small_pcs_counts() -> None:
    from veille.reads.console.pages import report_html
    from veille.reads.console.report import NOT_SHOWN, SUPPRESSED, pcs_section

    few = pcs_section({"activations": 2, "notified": 3, "acknowledged": 1, "to_cell": 0,
                       "checked": 4, "ok": 3, "need_help": 1, "absent": 0})
    assert few == {"activations": SUPPRESSED, "notified": SUPPRESSED, "acknowledged": SUPPRESSED,
                   "ack_share": NOT_SHOWN, "checked": SUPPRESSED, "need_help": SUPPRESSED,
                   "ok_share": NOT_SHOWN}
    many = pcs_section({"activations": 6, "notified": 40, "acknowledged": 30, "to_cell": 2,
                        "checked": 60, "ok": 50, "need_help": 7, "absent": 3})
    assert many["notified"] == "40" and many["ack_share"] == "75\u00a0%" and many["ok_share"] == "83\u00a0%"
    data = {"year": 2026, "name": "Montveille", "municipality": "35401", "total": "< 5", "alerts": "< 5",
            "by_category": [], "by_channel": [], "by_month": ["< 5"] * 12,
            "cross_boundary": {"dispatches": "< 5", "cross": "< 5", "share": NOT_SHOWN},
            "by_agency": [], "response_times": [], "delivery": [], "pcs": many}
    html = report_html(data)
    assert 'id="report-pcs"' in html and "Référents prévenus" in html and ">40<" in html


def test_console_pcs_page_per_activated_town(tmp_path: Path) -> None:
    from veille.config import Settings
    from veille.reads.console.pcs import pcs_html, pcs_rows
    from veille.territory import load_territory

    territory = load_territory(Settings().territory_dir)
    with chdb_store(tmp_path / "chdb") as store:
        store.insert("pcs_cascade", to_rows(EVENTS, datetime.now(UTC))["pcs_cascade"], "pcs_cascade|c")
        rows = pcs_rows(store, territory, 7)
    assert [name for name, _ in rows] == ["Montveille (35401)"]
    assert rows[0][1]["notified"] == 2 and rows[0][1]["need_help"] == 1
    html = pcs_html(rows, 7)
    assert 'id="pcs"' in html and "Montveille" in html and PERSON not in html
    assert 'id="pcs-none"' in pcs_html([], 7)


def test_prevention_actions_stored_then_indicators_and_report(tmp_path: Path) -> None:
    from datetime import date

    from veille.config import Settings
    from veille.pcs.prevention import PreventionAction
    from veille.reads.console.report import NOT_SHOWN, SUPPRESSED, prevention_section
    from veille.reads.pcs import prevention_indicators
    from veille.territory import load_territory

    territory = load_territory(Settings().territory_dir)

    def walk(i: int, day: date, residents: int) -> e.PreventionEvent:
        return e.PreventionEvent(at=NOW + i, action=PreventionAction(
            id=f"w{i}", municipality="35401", kind="exploratory_walk", date=day, area="Gare",
            participants={"residents": residents, "police": 1}))

    evs = [walk(i, date(2026, 4, 1 + i), 9) for i in range(5)]
    evs += [walk(9, date(2026, 8, 1), 3), walk(9, date(2026, 8, 1), 4)]  # re-recorded: replaced
    evs.append(e.PreventionEvent(at=NOW, action=PreventionAction(
        id="m1", municipality="35401", kind="neighbourhood_meeting", date=date(2026, 5, 2), area="Mairie",
        participants={"residents": 30})))
    decoded = [decode(_msg(e.encode(ev)), expect=PCS_TYPES) for ev in evs]
    with chdb_store(tmp_path / "chdb") as store:
        store.insert("prevention_actions", to_rows(decoded, datetime.now(UTC))["prevention_actions"], "p|1")
        got = prevention_indicators(store, territory, "35401", date(2026, 1, 1), date(2027, 1, 1))
    assert got["actions"] == 7 and got["participants"] == 5 * 10 + 5 + 30
    assert got["per_quarter"] == {"2026-Q2": {"exploratory_walk": 5, "neighbourhood_meeting": 1},
                                  "2026-Q3": {"exploratory_walk": 1}}
    # Q2: 80 participants over Montveille's 12,400 inhabitants.
    assert got["participation"]["2026-Q2"]["per_1000_inhabitants"] == round(80 * 1000 / 12400, 2)
    assert prevention_section(got) == [("2026-Q2", "exploratory_walk", "5", "10.0"),
                                       ("2026-Q2", "neighbourhood_meeting", SUPPRESSED, NOT_SHOWN),
                                       ("2026-Q3", "exploratory_walk", SUPPRESSED, NOT_SHOWN)]


def test_a_retry_event_is_stored_as_a_count(tmp_path: Path) -> None:
    retry = e.RetryEvent(activation="a1", at=NOW, owner="r1", step=0, notification="n1", attempt=2)
    decoded = decode(_msg(e.encode(retry)), expect=PCS_TYPES)
    assert not isinstance(decoded, DeadLetter)
    [row] = to_rows([decoded], datetime.now(UTC))["pcs_cascade"].to_pylist()
    assert (row["kind"], row["owner"], row["event_key"]) == ("retry", "r1", "n1/2")
