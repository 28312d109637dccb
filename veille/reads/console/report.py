"""The printable annual report of one municipality: the documented indicators over a calendar year
(``veille.reads.indicators``, as the CLI, the API and the console compute them).

It is meant to be published, so small numbers are suppressed: any count below ``THRESHOLD`` is
shown as "< 5" (0 included, so a zero cannot be told from a one), and a share or a response time
computed from fewer than ``THRESHOLD`` incidents is not shown at all, since it would give the small
count away. Suppression happens here, before any HTML is written: the raw numbers never reach the page.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from veille.reads.indicators import Cell, compute, reports_by_month_sql
from veille.reads.pcs import pcs_indicators, prevention_indicators
from veille.sinks.store import Store
from veille.territory import Territory

THRESHOLD = 5
SUPPRESSED = "< 5"
NOT_SHOWN = "n.d."  # a marker; the page writes the catalogue's "not_shown" text


def shown(count: int) -> str:
    return SUPPRESSED if count < THRESHOLD else str(count)


def shown_share(part: int, whole: int) -> str:
    if whole < THRESHOLD or part < THRESHOLD or whole - part < THRESHOLD:
        return NOT_SHOWN
    return f"{part / whole:.0%}".replace("%", "\u00a0%")


def shown_duration(seconds: float | None, count: int) -> str:
    if seconds is None or count < THRESHOLD:
        return NOT_SHOWN
    hours = seconds / 3600
    if seconds < 60:  # delivery times are often seconds
        return "< 1\u00a0s" if seconds < 1 else f"{seconds:.0f}\u00a0s"
    return f"{hours:.1f}\u00a0h".replace(".", ",") if hours >= 1 else f"{seconds / 60:.0f}\u00a0min"


def build_report(store: Store, territory: Territory, municipality: str, year: int) -> dict[str, Any]:
    """Everything the report prints, already suppressed (strings), in the page's order."""
    cell = Cell(municipalities=[municipality], start=date(year, 1, 1), end=date(year + 1, 1, 1))
    ind = compute(store, cell)
    rep = ind["reports"]
    months = [0] * 12
    for r in store.query(*reports_by_month_sql(store.database, cell)):
        months[int(r["month"]) - 1] = int(r["reports"])
    cb = ind["cross_boundary"]
    m = territory.municipalities[municipality]
    prevention = prevention_indicators(store, territory, municipality, cell.start, cell.end)

    def name(agency_id: str) -> str:
        return territory.agencies[agency_id].name if agency_id in territory.agencies else agency_id

    return {
        "municipality": municipality, "name": m.name, "year": year,
        "total": shown(rep["total"]),
        "by_category": [(k, shown(n)) for k, n in sorted(rep["by_category"].items(), key=lambda kv: -kv[1])],
        "by_channel": [(k, shown(n)) for k, n in sorted(rep["by_channel"].items(), key=lambda kv: -kv[1])],
        "by_month": [shown(n) for n in months],
        "cross_boundary": {"dispatches": shown(cb["dispatches"]), "cross": shown(cb["cross_boundary"]),
                           "share": shown_share(cb["cross_boundary"], cb["dispatches"])},
        "by_agency": [(territory.agencies[r["agency_id"]].name if r["agency_id"] in territory.agencies
                       else r["agency_id"], shown(r["dispatches"]), shown(r["cross_boundary"]),
                       shown_share(r["cross_boundary"], r["dispatches"])) for r in cb["by_agency"]],
        "response_times": [(territory.agencies[r["agency_id"]].name if r["agency_id"] in territory.agencies
                            else r["agency_id"], shown(r["acknowledged"]),
                            shown_duration(r["ack_p50_s"], r["acknowledged"]), shown(r["resolved"]),
                            shown_duration(r["resolve_p50_s"], r["resolved"]))
                           for r in ind["response_times"]],
        "alerts": shown(ind["alerts"]["total_by_municipality"].get(municipality, 0)),
        # Per body and method serving the town: dispatches delivered, median delivery time, undelivered.
        "delivery": [(name(r["agency_id"]), r["method"], shown(r["delivered"]),
                      shown_duration(r["delivery_p50_s"], r["delivered"]), shown(r["undelivered"]))
                     for r in ind["delivery"]["by_agency_method"]],
        "pcs": pcs_section(pcs_indicators(store, municipality, cell.start, cell.end)),
        "prevention": prevention_section(prevention),
        "walk_reports": walk_reports_section(prevention["walk_reports"]),
        "cases": cases_section(ind["cases"]),
    }


def cases_section(c: dict[str, Any]) -> list[tuple[str, str]]:
    """Grouping (veille/reads/cases.py): counts under 5 suppressed; a mean, a median or a time
    computed from fewer than 5 cases (or acknowledged cases) is not shown."""
    rep, per, ack = c["reports"], c["reports_per_case"], c["first_ack"]
    few = per["cases"] < THRESHOLD
    return [
        ("reports_grouped", shown(rep["grouped"])),
        ("grouped_share", shown_share(rep["grouped"], rep["total"])),
        ("cases", shown(per["cases"])),
        ("mean_reports", NOT_SHOWN if few or per["mean"] is None else f"{per['mean']:.1f}".replace(".", ",")),
        ("median_reports", NOT_SHOWN if few or per["median"] is None else str(per["median"])),
        ("first_ack_p50", shown_duration(ack["p50_s"], ack["acknowledged"])),
        *((f"cat:{r['category']}", shown(r["cases"])) for r in c["by_category"]),
    ]


def prevention_section(p: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Per quarter and kind: actions, participants per action (not shown under 5 actions), and the
    quarter's participation per 1,000 inhabitants (not shown under 5 participants)."""
    out = []
    for quarter, kinds in p["per_quarter"].items():
        part = p["participation"].get(quarter, {})
        for kind, n in sorted(kinds.items()):
            per_action = part.get(f"per_action.{kind}")
            out.append((quarter, kind, shown(n),
                        NOT_SHOWN if per_action is None or n < THRESHOLD else f"{per_action:.1f}"))
    return out


def walk_reports_section(w: dict[str, Any]) -> dict[str, str]:
    """Reports born from walks: how many, resolved, median processing time (not shown from
    fewer than 5 resolved)."""
    hours = w["median_processing_hours"]
    return {"reports": shown(w["reports"]), "resolved": shown(w["resolved"]),
            "median": shown_duration(None if hours is None else hours * 3600, w["resolved"])}


def pcs_section(p: dict[str, int]) -> dict[str, str]:
    """The PCS cascade's year (veille.reads.pcs), suppressed like every other count."""
    return {"activations": shown(p["activations"]), "notified": shown(p["notified"]),
            "acknowledged": shown(p["acknowledged"]),
            "ack_share": shown_share(p["acknowledged"], p["notified"]),
            "checked": shown(p["checked"]), "need_help": shown(p["need_help"]),
            "ok_share": shown_share(p["ok"], p["checked"])}
