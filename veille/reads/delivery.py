"""Delivery indicators: which dispatches reached their body, how fast, and which have not.

Read from the ``delivery_receipts`` table (every attempt of ``veille deliver run``, migration 0004).
A *delivery* is a (dispatch, method) pair with at least one receipt; its state **now** comes from its
receipts (docs/indicators.md, "Delivery to the bodies"):

* ``delivered``: one of its attempts was accepted (HTTP 2xx, SMTP 250, Open311 201);
* otherwise the outcome of its latest attempt: ``pending`` (``retry``: being retried, within the
  limit), ``failed`` (refused, tried again at the longest delay), ``disabled`` (HTTP 410: nothing
  more is sent until the body's configuration changes), ``undelivered`` (older than the configured
  limit, still retried).

*Delivery time*: from the start of the first attempt (its ``at`` minus its ``latency_ms``) to the
end of the first accepted attempt, exact quantiles (``quantilesExact``, not interpolated). A receipt
names its dispatch and body, not the event: a cell selects the **bodies** its events were dispatched
to in the period, and their deliveries whose first attempt fell in the period.
SQL builders are pure; ``compute`` runs them; ``veille.reads.indicators.compute`` includes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from veille.reads.cell import LOCAL_TZ, Cell, Query, quantile_seconds, text_table
from veille.sinks.store import Store

STATES = ("delivered", "pending", "failed", "disabled", "undelivered")
# Not accepted and not simply waiting for the next try: what "en échec depuis…" counts.
FAILING = ("failed", "disabled", "undelivered")
# The order of the console's list of deliveries not accepted: the undelivered first.
STUCK_ORDER = ("undelivered", "disabled", "failed", "pending")
STUCK_PER_AGENCY = 20


def deliveries(db: str) -> str:
    """One row per (agency, dispatch, method) with receipts: attempts, first attempt start and first
    acceptance (epoch ms; 0 when never accepted), the latest attempt ``(outcome, status_code, reply,
    at)`` and the ``state`` now. The one definition of a delivery's state."""
    return f"""
    SELECT agency_id, dispatch_id, method, toUInt64(count()) AS attempts,
           min(toUnixTimestamp64Milli(at) - toInt64(latency_ms)) AS first_ms,
           minIf(toUnixTimestamp64Milli(at), outcome = 'delivered') AS delivered_ms,
           argMax(tuple(outcome, status_code, reply, at), (at, attempt)) AS last,
           multiIf(countIf(outcome = 'delivered') > 0, 'delivered',
                   tupleElement(last, 1) IN {FAILING!r}, toString(tupleElement(last, 1)),
                   'pending') AS state
    FROM {db}.delivery_receipts FINAL
    GROUP BY agency_id, dispatch_id, method"""


def bodies_of_cell(db: str) -> str:
    """The agencies the cell's events were dispatched to: incidents declared in, or alerts affecting,
    one of its municipalities, reported (sent) on a local day of the period."""
    return f"""
        SELECT DISTINCT agency_id FROM {db}.dispatches FINAL
        WHERE hasAny(municipalities, {{munis:Array(String)}})
          AND toDate(reported_at, '{LOCAL_TZ}') >= {{start:Date}}
          AND toDate(reported_at, '{LOCAL_TZ}') < {{end:Date}}"""


def selection(db: str, agency_where: str = "") -> str:
    """The deliveries of a cell: first attempt on a local day of the period, for a body of the cell
    (``bodies_of_cell``), and ``agency_where`` (the console's agency filter)."""
    first_day = f"toDate(fromUnixTimestamp64Milli(first_ms), '{LOCAL_TZ}')"
    extra = f" AND ({agency_where})" if agency_where else ""
    return (f"{first_day} >= {{start:Date}} AND {first_day} < {{end:Date}} "
            f"AND agency_id IN ({bodies_of_cell(db)}){extra}")


def by_agency_method_select(db: str, where: str) -> str:
    """Per agency and method: deliveries in each state, delivery time (p50, p90) of those accepted,
    and the first attempt of the oldest failing and of the oldest undelivered (epoch ms, or NULL)."""
    counts = ",\n       ".join(f"toUInt64(countIf(state = '{s}')) AS {s}" for s in STATES)
    return f"""
SELECT agency_id, toString(method) AS method, toUInt64(count()) AS dispatches,
       {counts},
       quantilesExactIf(0.5, 0.9)(greatest(0, delivered_ms - first_ms) / 1000, state = 'delivered') AS time_q,
       minIfOrNull(first_ms, state IN {FAILING!r}) AS failing_since_ms,
       minIfOrNull(first_ms, state = 'undelivered') AS undelivered_since_ms
FROM ({deliveries(db)}
)
WHERE {where}
GROUP BY agency_id, method
ORDER BY agency_id, method"""


def oldest_undelivered_select(db: str, where: str) -> str:
    """Per agency with undelivered dispatches: how many, and the oldest (its first attempt, its id
    and method)."""
    return f"""
SELECT agency_id, toUInt64(uniqExact(dispatch_id)) AS undelivered, min(first_ms) AS since_ms,
       tupleElement(argMin(tuple(toString(dispatch_id), toString(method)), first_ms), 1) AS oldest_dispatch,
       tupleElement(argMin(tuple(toString(dispatch_id), toString(method)), first_ms), 2) AS oldest_method
FROM ({deliveries(db)}
)
WHERE state = 'undelivered' AND {where}
GROUP BY agency_id
ORDER BY since_ms, agency_id"""


def stuck_select(db: str, where: str, per_agency: int = STUCK_PER_AGENCY) -> str:
    """The deliveries not accepted, per agency the undelivered first, then disabled, failed and
    pending, oldest first, at most ``per_agency`` each: what the console lists."""
    return f"""
SELECT agency_id, toString(dispatch_id) AS dispatch_id, toString(method) AS method, state, attempts,
       first_ms, toString(tupleElement(last, 1)) AS last_outcome, tupleElement(last, 2) AS last_code,
       tupleElement(last, 3) AS last_reply, tupleElement(last, 4) AS last_at
FROM ({deliveries(db)}
)
WHERE state != 'delivered' AND {where}
ORDER BY agency_id, indexOf({list(STUCK_ORDER)!r}, state), first_ms, dispatch_id, method
LIMIT {int(per_agency)} BY agency_id"""


def by_agency_method_sql(db: str, cell: Cell) -> Query:
    return by_agency_method_select(db, selection(db)), cell.params()


def oldest_undelivered_sql(db: str, cell: Cell) -> Query:
    return oldest_undelivered_select(db, selection(db)), cell.params()


def short_ref(dispatch_id: str) -> str:
    """The reference a body reads in its e-mails (``réf. XXXX-XXXX``: the id's first 8 hex digits,
    as ``veille.deliver.view.DispatchView.short_id``)."""
    head = dispatch_id.replace("-", "")[:8].upper()
    return f"{head[:4]}-{head[4:]}"


def iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def agency_method_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row of ``by_agency_method_select``: counts, times in seconds, ISO times of the oldest."""
    delivered = int(row["delivered"])
    return {"agency_id": row["agency_id"], "method": row["method"], "dispatches": int(row["dispatches"]),
            **{s: int(row[s]) for s in STATES},
            "delivery_p50_s": quantile_seconds(row["time_q"], 0, delivered),
            "delivery_p90_s": quantile_seconds(row["time_q"], 1, delivered),
            "failing_since": iso_ms(row["failing_since_ms"]),
            "undelivered_since": iso_ms(row["undelivered_since_ms"])}


def oldest_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"agency_id": row["agency_id"], "undelivered": int(row["undelivered"]),
            "since": iso_ms(int(row["since_ms"])), "dispatch_id": row["oldest_dispatch"],
            "method": row["oldest_method"]}


def stuck_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row of ``stuck_select``: the delivery, its state, and its latest attempt's answer."""
    return {"agency_id": row["agency_id"], "dispatch_id": row["dispatch_id"],
            "ref": short_ref(row["dispatch_id"]), "method": row["method"], "state": row["state"],
            "attempts": int(row["attempts"]), "since": iso_ms(int(row["first_ms"])),
            "last_outcome": row["last_outcome"],
            "last_code": None if row["last_code"] is None else int(row["last_code"]),
            "last_reply": row["last_reply"],
            "last_at": row["last_at"].astimezone(UTC).isoformat(timespec="milliseconds")}


def compute(store: Store, cell: Cell) -> dict[str, Any]:
    db = store.database
    return {"by_agency_method": [agency_method_row(r) for r in store.query(*by_agency_method_sql(db, cell))],
            "oldest_undelivered": [oldest_row(r) for r in store.query(*oldest_undelivered_sql(db, cell))]}


def render_text(result: dict[str, Any]) -> str:
    rows = result["by_agency_method"]
    return "\n\n".join([
        text_table("Delivery to the bodies, per agency and method (state now; seconds)",
                   ["agency", "method", "dispatches", *STATES, "p50", "p90", "failing since"],
                   [[r["agency_id"], r["method"], r["dispatches"], *(r[s] for s in STATES),
                     r["delivery_p50_s"], r["delivery_p90_s"], r["failing_since"]] for r in rows]),
        text_table("Oldest undelivered dispatch per agency",
                   ["agency", "undelivered", "since", "method", "dispatch"],
                   [[r["agency_id"], r["undelivered"], r["since"], r["method"], r["dispatch_id"]]
                    for r in result["oldest_undelivered"]]),
    ])


__all__ = ["FAILING", "STATES", "agency_method_row", "by_agency_method_select", "compute", "deliveries",
           "oldest_undelivered_select", "render_text", "selection", "short_ref", "stuck_row", "stuck_select"]
