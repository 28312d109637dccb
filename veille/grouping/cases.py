"""What one record of ``<prefix>.grouping`` does to the state of one cell (docs/grouping.md).

Pure: :meth:`Grouper.on_record` takes the cell's state (a JSON-able dict: the cases it owns,
the shadows of its neighbours' cases, its event-time clock) and one envelope, and returns the
new state with the outputs to publish. No wall clock: times are the reports' ``reported_at``,
so the same records in the same order give the same cases, ids and outputs.

Decisions
* A report is decided by one cell only (:func:`~veille.grouping.cells.decider_cell`): a
  ``report`` whose own cell is not its decider is forwarded there as a ``probe``.
* It joins the nearest open case of the same grouping rule (a rule's categories group together:
  "flood" and "flash_flood" at one underpass are one case) whose **first report** is within the
  rule's radius (the anchor never moves: a chain of reports cannot make a case crawl down a
  street) and within the rule's window of that first report's time (either side: a report
  made earlier but arriving later still joins). Ties: the earlier case, then the lower id.
* A case held as a shadow is joined by forwarding the report (``join``) to the owner cell,
  which alone counts it, dispatches and raises the case's severity.
* Otherwise the case is opened (id: its incident id) by the **opening cell**, the lowest cell
  met by twice the radius around the report: the deciding cell forwards the report there
  (``open``) when it is another cell, which looks for a case again (one may have opened there
  meanwhile) and otherwise opens it. Two reports within the radius of each other near the
  border of two cells are therefore decided or opened in one cell, whatever their order. Shadows
  are sent to every other cell that may decide a report within the radius (cells met by twice
  the radius).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from veille.grouping.cells import cells_within, decider_cell, distance_m
from veille.grouping.envelope import Envelope, Report, Shadow, encode
from veille.grouping.records import MAX_POSITIONS, Writer, body_key, case_ref
from veille.kafka import Output
from veille.schemas.models import DispatchTarget, GeoPoint, Incident, IncidentCategory, Severity
from veille.territory import Territory
from veille.territory.model import GroupingRule
from veille.territory.routing import route_incident

State = dict[str, Any]
# A case (or shadow) is forgotten once the cell's clock is this far past its window: a report
# arriving later than that (by event time) opens a case of its own (docs/grouping.md, limits).
GRACE_MS = 30 * 60 * 1000
SEVERE = Severity.severe


def case_severity(severe_at: int | None, most_severe: Severity, reports: int) -> Severity:
    """A case's severity: its most severe report's, at least severe once it has ``severe_at``
    reports (its rule's). The grouper raises the case with it; the console shows it."""
    if severe_at is not None and reports >= severe_at and most_severe.rank < SEVERE.rank:
        return SEVERE
    return most_severe


def empty_state() -> State:
    return {"cases": {}, "shadows": {}, "clock": 0}


@dataclass
class Decision:
    state: State
    outputs: list[Output] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    write: bool = True  # False: leave the cell's stored state as it is


class Grouper:
    def __init__(self, territory: Territory, writer: Writer) -> None:
        self.territory = territory
        self.grouping = territory.rules.grouping
        self.resolution = self.grouping.cell_resolution
        self.writer = writer

    # -- entry point ---------------------------------------------------------------
    def on_record(self, cell: str, state: State | None, env: Envelope) -> Decision:
        """Apply ``env`` (keyed by ``cell``) to the cell's ``state`` (modified in place)."""
        d = Decision(state if state is not None else empty_state())
        if env.kind == "shadow":
            assert env.shadow is not None
            self._shadow(d, cell, env.shadow)
            return d
        report = env.report
        assert report is not None
        rule = self.rule_for(report)
        if rule is None:  # the territory changed since the router sent it: as the router would
            return self.ungrouped(report)
        state = d.state
        state["clock"] = max(d.state["clock"], report.reported_at)
        self._prune(d.state)
        if env.kind == "join":
            assert env.case_id is not None
            case = state["cases"].get(str(env.case_id))
            if case is None:  # the owner forgot it (past its window and grace): a case of its own
                self._open(d, cell, report, rule)
            else:
                self._join(d, case, report)
            return d
        if env.kind == "report":
            decider = decider_cell(report.lat, report.lon, rule.radius_m, self.resolution)
            if decider != cell:
                d.outputs.append(Output(self.writer.topics.grouping, decider.encode(),
                                        encode(Envelope(kind="probe", report=report))))
                d.events["probes"] += 1
                return d
        self._decide(d, cell, report, rule, opening=env.kind == "open")
        return d

    def ungrouped(self, report: Report) -> Decision:
        """The report dispatched on its own, as the router does without grouping."""
        d = Decision(empty_state(), write=False)
        d.outputs += [self.writer.dispatch(report, t, None) for t in report.targets]
        d.outputs.append(self.writer.routed(report, None, report.targets))
        d.events["ungrouped"] += 1
        return d

    def rule_for(self, report: Report) -> GroupingRule | None:
        try:
            category = IncidentCategory(report.category)
        except ValueError:
            return None
        return self.grouping.rule_for(category)

    # -- decisions -----------------------------------------------------------------
    def _decide(self, d: Decision, cell: str, report: Report, rule: GroupingRule, opening: bool) -> None:
        rid = str(report.id)
        for case in d.state["cases"].values():
            if rid in case["members"]:
                d.events["replayed"] += 1  # outputs were published before the state was written
                return
        best: tuple[float, int, str, str] | None = None
        for kind in ("cases", "shadows"):
            for cid, c in d.state[kind].items():
                if c["rule"] != rule.id:
                    continue
                if abs(report.reported_at - c["first_at"]) > c["window_ms"]:
                    continue
                dist = distance_m(report.lat, report.lon, c["lat"], c["lon"])
                if dist <= c["radius_m"]:
                    cand = (dist, c["first_at"], cid, kind)
                    best = cand if best is None or cand < best else best
        if best is None:
            opener = cells_within(report.lat, report.lon, 2 * rule.radius_m, self.resolution)[0]
            if opener != cell and not opening:
                # Cases near a border are opened by one cell, the lowest their reports' disks
                # meet: two reports of one place decided by two cells meet there, in one order.
                d.outputs.append(Output(self.writer.topics.grouping, opener.encode(),
                                        encode(Envelope(kind="open", report=report))))
                d.events["openers"] += 1
                return
            self._open(d, cell, report, rule)
        elif best[3] == "cases":
            self._join(d, d.state["cases"][best[2]], report)
        else:
            owner = d.state["shadows"][best[2]]["owner"]
            d.outputs.append(Output(self.writer.topics.grouping, owner.encode(),
                                    encode(Envelope(kind="join", report=report, case_id=best[2]))))
            d.events["forwarded"] += 1

    def _open(self, d: Decision, cell: str, report: Report, rule: GroupingRule) -> None:
        cid = str(report.id)
        case: dict[str, Any] = {
            "id": cid, "rule": rule.id, "category": report.category, "lat": report.lat, "lon": report.lon,
            "first_at": report.reported_at, "window_ms": int(rule.window_minutes * 60_000),
            "radius_m": rule.radius_m, "severe_at": rule.severe_at, "count": 1,
            "severity": report.severity, "municipalities": [report.where],
            "positions": [[report.lat, report.lon]], "bodies": {}, "members": [cid],
            "first": report.model_dump(mode="json"),
        }
        d.state["cases"][cid] = case
        ref = case_ref(case, "opened")
        for t in report.targets:
            out = self.writer.dispatch(report, t, ref)
            case["bodies"][body_key(t)] = self.writer.dispatch_id(cid, t)
            d.outputs.append(out)
        d.outputs.append(self.writer.routed(report, cid, report.targets))
        d.events["opened"] += 1
        shadow = Shadow(id=report.id, rule=rule.id, category=report.category, lat=report.lat, lon=report.lon,
                        first_at=report.reported_at, window_ms=case["window_ms"], radius_m=rule.radius_m,
                        owner=cell)
        for other in cells_within(report.lat, report.lon, 2 * rule.radius_m, self.resolution):
            if other != cell:
                d.outputs.append(Output(self.writer.topics.grouping, other.encode(),
                                        encode(Envelope(kind="shadow", shadow=shadow))))
                d.events["shadows"] += 1

    def _join(self, d: Decision, case: dict[str, Any], report: Report) -> None:
        rid = str(report.id)
        if rid in case["members"]:
            d.events["replayed"] += 1
            return
        case["count"] += 1
        case["members"].append(rid)
        if report.where not in case["municipalities"]:
            case["municipalities"].append(report.where)
        case["positions"] = [*case["positions"], [report.lat, report.lon]][-MAX_POSITIONS:]
        before = Severity(case["severity"])
        after = case_severity(case["severe_at"], max(before, Severity(report.severity), key=lambda s: s.rank),
                              case["count"])
        case["severity"] = after.value
        dispatched, updated = [], []
        for t in report.targets:
            key = body_key(t)
            first = case["bodies"].get(key)
            if first is None:  # a body new to the case (the next town's services): it opens it
                d.outputs.append(self.writer.dispatch(report, t, case_ref(case, "opened")))
                case["bodies"][key] = self.writer.dispatch_id(rid, t)
                dispatched.append(t)
            else:
                d.outputs.append(self.writer.dispatch(report, t, case_ref(case, "update", first)))
                updated.append(t)
        d.outputs.append(self.writer.routed(report, case["id"], dispatched, updated))
        d.events["joined"] += 1
        d.events["updates"] += len(updated)
        if after.rank > before.rank:
            self._escalate(d, case, after, report.routed_at)

    def _escalate(self, d: Decision, case: dict[str, Any], severity: Severity, at_ms: int) -> None:
        """Route the case's first report again at the case's severity: the bodies the
        territory's ``escalations`` add receive the case (``opened``, with its count). The first
        report's routing record is written again with them among its dispatches (routed at the
        raising report's time), so that the store, the resident's page and the bodies'
        acknowledgements know them, as after the router's own re-routing; its severity stays the
        reporter's (the case's is in the dispatches)."""
        first = Report.model_validate(case["first"])
        incident = Incident.model_construct(
            id=first.id, municipality=first.municipality, category=IncidentCategory(first.category),
            severity=severity, location=GeoPoint(lat=first.lat, lon=first.lon))
        decision = route_incident(incident, self.territory)
        d.events["raised"] += 1
        added: list[DispatchTarget] = []
        for t in decision.targets:
            key = body_key(t)
            if key in case["bodies"]:
                continue
            ref = case_ref(case, "opened")
            d.outputs.append(self.writer.dispatch(first, t, ref, severity=severity.value))
            case["bodies"][key] = self.writer.dispatch_id(case["id"], t)
            case.setdefault("escalated", []).append(t.model_dump(mode="json"))
            added.append(t)
            d.events["escalated"] += 1
        if added:
            escalated = [DispatchTarget.model_validate(t) for t in case["escalated"]]
            # Strictly after the first routing: the store keeps the latest routing of an incident.
            again = first.model_copy(update={"routed_at": max(at_ms, first.routed_at + 1)})
            d.outputs.append(self.writer.routed(again, case["id"], [*first.targets, *escalated]))

    def _shadow(self, d: Decision, cell: str, shadow: Shadow) -> None:
        sid = str(shadow.id)
        if shadow.owner == cell or sid in d.state["cases"]:
            return
        d.state["clock"] = max(d.state["clock"], shadow.first_at)
        d.state["shadows"][sid] = shadow.model_dump(mode="json")
        self._prune(d.state)

    def _prune(self, state: State) -> None:
        clock = state["clock"]
        for kind in ("cases", "shadows"):
            gone = [k for k, c in state[kind].items() if c["first_at"] + c["window_ms"] + GRACE_MS < clock]
            for k in gone:
                del state[kind][k]


def member_of(state: State) -> dict[str, str]:
    """Report id -> case id, for the cases ``state`` owns (tests and the demo's counts)."""
    return {m: cid for cid, c in state["cases"].items() for m in c["members"]}


__all__ = ["GRACE_MS", "Decision", "Grouper", "State", "empty_state", "member_of"]
