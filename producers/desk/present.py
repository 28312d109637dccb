"""A dispatch as the desk's pages show it: French labels, deadlines, delivery, other bodies.

Pure functions of an :class:`Entry`, the territory and "now" (a parameter, so a page is
reproducible and testable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from veille.deliver.view import severity_label
from veille.producers.desk.book import Entry
from veille.producers.desk.forms import text
from veille.schemas.enums import IncidentCategory, Severity
from veille.territory import Territory

LOCAL_TZ = ZoneInfo("Europe/Paris")
CATEGORIES = {c.value for c in IncidentCategory}
SEVERITIES = {s.value for s in Severity}


def french_time(value: datetime | None) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M") if value else ""


def reference(dispatch_id: str) -> str:
    """The dispatch's reference as the e-mails print it (its id's first 8 hex digits)."""
    head = dispatch_id.replace("-", "")[:8].upper()
    return f"{head[:4]}-{head[4:]}"


def _span(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d}"
    return f"{hours // 24} j {hours % 24} h"


@dataclass(frozen=True)
class Deadline:
    label: str
    state: str  # done | late | running | none

    def as_json(self) -> dict[str, str]:
        return {"label": self.label, "state": self.state}


def deadline(due: datetime | None, done_at: datetime | None, now: datetime) -> Deadline:
    if due is None:
        return Deadline(text("deadline.none"), "none")
    if done_at is not None:
        late = done_at > due
        return Deadline(text("deadline.done_late" if late else "deadline.done"), "late" if late else "done")
    if now > due:
        return Deadline(text("deadline.overdue", span=_span(now - due)), "late")
    return Deadline(text("deadline.left", span=_span(due - now)), "running")


def present(entry: Entry, territory: Territory, others: list[str], now: datetime) -> dict[str, Any]:
    d, v = entry.dispatch, entry.view
    rule = None
    if d.category in CATEGORIES and d.severity in SEVERITIES:
        rule = territory.rules.deadline_for(IncidentCategory(d.category), Severity(d.severity))
    ack_due = d.reported_at + timedelta(hours=rule.acknowledge_hours) if rule else None
    res_due = d.reported_at + timedelta(hours=rule.resolve_hours) if rule else None
    town = territory.municipalities.get(d.municipality)
    severity = entry.severity
    return {
        "id": entry.id, "reference": reference(entry.id), "category": d.category,
        "category_label": v.category_label, "severity": severity,
        "severity_label": severity_label(severity) if severity != d.severity else v.severity_label,
        "municipality": d.municipality, "town": town.name if town else d.municipality,
        "address": v.address or "", "lat": v.location.lat if v.location else None,
        "lon": v.location.lon if v.location else None,
        "reported_at": french_time(d.reported_at), "reported_iso": d.reported_at.isoformat(),
        "status": entry.status.value, "status_label": text(f"status.{entry.status.value}"),
        "status_at": french_time(entry.status_at), "closed": entry.closed,
        "ack": deadline(ack_due, entry.acknowledged_at, now).as_json(),
        "resolve": deadline(res_due, entry.resolved_at, now).as_json(),
        "delivery": text(f"delivery.{entry.delivery.value}") if entry.delivery else text("delivery.none"),
        "others": [territory.agencies[a].name if a in territory.agencies else a for a in others],
        "cross_boundary": d.cross_boundary, "service": v.service_label,
        # Cases (docs/grouping.md): a case's dispatch counts its linked reports; a split one says so.
        "case": entry.role == "opened", "case_reports": entry.case_reports if entry.role == "opened" else 0,
        "split": entry.split, "case_id": entry.case_id,
        "positions": [[p.lat, p.lon] for p in entry.positions] if entry.role == "opened" else [],
    }


def linked_report(entry: Entry, territory: Territory) -> dict[str, Any]:
    """One report of a case as the case's page lists it: when, how, where. No contact: a
    report's contact shows on its own page only, once split, where the body may see it."""
    d, v = entry.dispatch, entry.view
    town = territory.municipalities.get(d.municipality)
    return {"id": entry.id, "reference": reference(entry.id), "reported_at": french_time(d.reported_at),
            "channel": v.channel or "", "channel_label": text(f"channel.{v.channel}") if v.channel else "",
            "town": town.name if town else d.municipality, "severity_label": v.severity_label,
            "lat": v.location.lat if v.location else None, "lon": v.location.lon if v.location else None,
            "split": entry.split, "status_label": text(f"status.{entry.status.value}")}


def detail(entry: Entry) -> dict[str, Any]:
    """What only the dispatch's own page shows: the report's words and, where the personal-data
    rules gave it to this body, the reporter's contact (exactly what the Dispatch carries)."""
    v = entry.view
    reporter = v.reporter
    return {"description": v.description or "", "occurred_at": french_time(v.occurred_at),
            "reporter": {k: val for k, val in (("name", reporter.name), ("phone", reporter.phone),
                                               ("email", reporter.email)) if val} if reporter else {},
            "history": [(text(f"status.{s.value}"), french_time(at)) for s, at in entry.history]}
