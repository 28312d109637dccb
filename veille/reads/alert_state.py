"""CAP alert state in the store: which alerts are in force, and what closed the others.

The state is derived, never written: ``migrations/0003_alert_lifecycle.sql`` defines the
views ``alert_closures`` (each alert an Update or Cancel of the same sender replaced) and
``active_alerts`` (msgType Alert or Update, not closed, not expired). These helpers are the
only queries the CAP feed and the console need, so neither writes SQL against the views.
"""

from __future__ import annotations

from typing import Any

from veille.sinks.store import Store

# An agency's CAP consumer acts on what it receives: exercises, tests and drafts stay out
# of the public feed unless asked for.
PUBLIC_STATUSES: tuple[str, ...] = ("Actual",)

_COLUMNS = ("identifier, sender, sent, status, msg_type, scope, event, category, severity, urgency, "
            "headline, municipalities, agencies, references, expires, cap_json, routed_at")


def active_alerts(store: Store, municipality: str | None = None,
                  statuses: tuple[str, ...] = PUBLIC_STATUSES, limit: int = 200) -> list[dict[str, Any]]:
    """Alerts in force (newest first), of one municipality or of the whole territory."""
    where = ["status IN {statuses:Array(String)}"]
    params: dict[str, Any] = {"statuses": list(statuses), "limit": limit}
    if municipality is not None:
        where.append("has(municipalities, {municipality:String})")
        params["municipality"] = municipality
    return store.query(f"SELECT {_COLUMNS} FROM {store.database}.active_alerts "
                       f"WHERE {' AND '.join(where)} ORDER BY sent DESC, identifier LIMIT {{limit:UInt32}}",
                       params)


def alert_row(store: Store, sender: str, identifier: str) -> dict[str, Any] | None:
    """The stored alert (any state), or None."""
    rows = store.query(f"SELECT {_COLUMNS} FROM {store.database}.alerts FINAL "
                       "WHERE sender = {sender:String} AND identifier = {identifier:String} LIMIT 1",
                       {"sender": sender, "identifier": identifier})
    return rows[0] if rows else None


def closures(store: Store, sender: str, identifier: str) -> list[dict[str, Any]]:
    """The Updates and Cancels (same sender) that replaced this alert, oldest first."""
    return store.query(f"SELECT by_identifier, by_msg_type, by_sent FROM {store.database}.alert_closures "
                       "WHERE sender = {sender:String} AND identifier = {identifier:String} "
                       "ORDER BY by_sent, by_identifier", {"sender": sender, "identifier": identifier})


def state(store: Store, sender: str, identifier: str) -> str | None:
    """``active``, ``cancelled``, ``superseded``, ``expired``, ``closing`` (a Cancel itself) or None."""
    row = alert_row(store, sender, identifier)
    if row is None:
        return None
    by = {c["by_msg_type"] for c in closures(store, sender, identifier)}
    if "Cancel" in by:
        return "cancelled"
    if "Update" in by:
        return "superseded"
    if row["msg_type"] not in ("Alert", "Update"):
        return "closing"
    active = store.query(f"SELECT count() AS n FROM {store.database}.active_alerts "
                         "WHERE sender = {sender:String} AND identifier = {identifier:String}",
                         {"sender": sender, "identifier": identifier})
    return "active" if int(active[0]["n"]) else "expired"
