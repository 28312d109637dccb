"""The known data of the console tests: routed incidents, status updates and an alert whose every
count is chosen (per municipality, category, channel, status), delivery receipts whose every state
is chosen, and the filter semantics computed here in Python, independently of the console's SQL, to
compare with what the page and export show."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial

from veille.schemas.models import (
    Alert,
    DeliveryReceipt,
    DispatchTarget,
    RoutedAlert,
    RoutedIncident,
    StatusUpdate,
)
from veille.territory import load_territory

# Incidents per municipality: 35403 and 35405 stay under 5 (the report suppresses them), 35406 has none.
COUNTS = {"35401": 12, "35402": 7, "35403": 3, "35404": 5, "35405": 1}
CATEGORIES = ("flood", "graffiti", "assault", "broken_streetlight")
CHANNELS = ("app", "phone", "town_hall_desk", "neighbourhood_representative")
POLICE = {"35405": "pm-plessis-tremel", "35406": "pm-plessis-tremel"}


@dataclass(frozen=True)
class Known:
    incident: RoutedIncident
    status: str  # latest status over agencies ("new" if none)


def _point(code: str, k: int) -> tuple[float, float]:
    geom = load_territory().municipalities[code].geometry
    p = geom.representative_point()
    # Spread the points a little (inside the town), with digits no grid cell centre has.
    return round(p.y + 0.0013 * (k % 3) + 0.00017, 6), round(p.x + 0.0011 * (k % 2) + 0.00023, 6)


def dataset(today: date | None = None) -> tuple[list[Known], list[StatusUpdate], RoutedAlert]:
    # The latest day whose data (10:00 to 11:30 UTC) is all in the past: a StatusUpdate from the
    # future is refused, and a run before noon UTC would otherwise make one.
    today = today or (datetime.now(UTC) - timedelta(hours=12)).date()
    known: list[Known] = []
    updates: list[StatusUpdate] = []
    n = 0
    for code, count in COUNTS.items():
        for k in range(count):
            category = CATEGORIES[n % len(CATEGORIES)]
            # 10:00 UTC is the same local day in Paris: days stay unambiguous.
            reported = datetime.combine(today - timedelta(days=n % 4), datetime.min.time(), UTC) \
                + timedelta(hours=10, minutes=n)
            lat, lon = _point(code, k)
            targets = [DispatchTarget(agency_id=POLICE.get(code, f"pm-{code}"), service="municipal_police",
                                      rule="security", cross_boundary=False)]
            if category == "flood":
                targets = [DispatchTarget(agency_id="syndicat-eaux-veille", service="stormwater",
                                          rule="flooding", cross_boundary=True),
                           DispatchTarget(agency_id="sdis35", service="fire_rescue", rule="flooding",
                                          cross_boundary=False)]
            inc = RoutedIncident.model_validate({
                "id": uuid.uuid4(), "municipality": code, "category": category, "severity": "moderate",
                "channel": CHANNELS[n % len(CHANNELS)], "location": {"lat": lat, "lon": lon},
                "occurred_at": reported - timedelta(minutes=5), "reported_at": reported,
                "routed_at": reported + timedelta(seconds=2), "reporter_pseudonym": f"ps-{n}",
                "dispatches": targets})
            status = "new"
            agency = targets[0].agency_id
            if n % 3 == 0:
                updates.append(StatusUpdate(id=uuid.uuid4(), incident_id=inc.id, agency_id=agency,
                                            status="acknowledged", at=reported + timedelta(minutes=10)))
                status = "acknowledged"
            if n % 5 == 0:
                updates.append(StatusUpdate(id=uuid.uuid4(), incident_id=inc.id, agency_id=agency,
                                            status="resolved", at=reported + timedelta(minutes=50)))
                status = "resolved"
            known.append(Known(inc, status))
            n += 1
    sent = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=8)
    return known, updates, routed_alert(f"console-{uuid.uuid4().hex[:8]}", sent)


def routed_alert(identifier: str, sent: datetime, msg_type: str = "Alert", references: tuple[str, ...] = (),
                 expires: datetime | None = None) -> RoutedAlert:
    """A flood alert on 35401 and 35402 whose CAP area is a square around Montveille's centre,
    stored as the router stores it (with the whole alert as JSON)."""
    lat, lon = _point("35401", 0)
    ring = [{"lat": lat + dy, "lon": lon + dx} for dy, dx in
            ((-0.01, -0.01), (-0.01, 0.01), (0.01, 0.01), (0.01, -0.01), (-0.01, -0.01))]
    sender = "pref35@interieur.gouv.fr"
    cap = Alert.model_validate({
        "identifier": identifier, "sender": sender, "sent": sent, "status": "Actual", "msg_type": msg_type,
        "scope": "Public", "references": list(references),
        "infos": [{"category": ["Met"], "event": "Crue", "urgency": "Immediate", "severity": "Severe",
                   "certainty": "Likely", "headline": "Vigilance crues sur la Veille", "expires": expires,
                   "areas": [{"area_desc": "Bords de la Veille", "polygons": [ring]}]}]})
    return RoutedAlert(
        identifier=identifier, sender=sender, sent=sent, status="Actual", msg_type=msg_type, event="Crue",
        category="Met", severity="Severe", urgency="Immediate", headline="Vigilance crues sur la Veille",
        municipalities=["35401", "35402"], scope="Public", references=list(references), expires=expires,
        cap_json=cap.model_dump_json(), routed_at=sent,
        dispatches=[DispatchTarget(agency_id="sdis35", service="fire_rescue", rule="alert-flood",
                                   cross_boundary=False)])


def selected(known: list[Known], *, municipalities: tuple[str, ...] = (), category: str = "",
             channel: str = "", agency: str = "", status: str = "") -> list[Known]:
    """The filter's meaning, written again without SQL."""
    out = []
    for k in known:
        inc = k.incident
        if municipalities and inc.municipality not in municipalities:
            continue
        if category and inc.category.value != category:
            continue
        if channel and inc.channel.value != channel:
            continue
        if agency and agency not in {t.agency_id for t in inc.dispatches}:
            continue
        closed = k.status in ("resolved", "rejected")
        if status and not (status == k.status or (status == "open" and not closed)
                           or (status == "closed" and closed)):
            continue
        out.append(k)
    return out


# How each body with a push method is reached in the test data, and its one delivery that does
# not go through (of its first dispatch; of its second for sdis35). Other bodies: Kafka only.
DELIVERY = {"syndicat-eaux-veille": ("webhook", "undelivered"), "sdis35": ("email", "pending"),
            "pm-35401": ("open311", "failed"), "pm-35402": ("webhook", "disabled")}
# The bodies in the console's order: undelivered first, then failing (the oldest first), then by name.
DELIVERY_ORDER = ("syndicat-eaux-veille", "pm-35401", "pm-35402", "sdis35")


def delivery_id(incident: RoutedIncident, agency_id: str) -> uuid.UUID:
    return uuid.uuid5(incident.id, agency_id)


def _receipt(dispatch: uuid.UUID, agency: str, method: str, routed_at: datetime, attempt: int, minutes: float,
             outcome: str, code: int | None, reply: str | None) -> DeliveryReceipt:
    return DeliveryReceipt(dispatch_id=dispatch, agency_id=agency, method=method, attempt=attempt,
                           outcome=outcome, status_code=code, reply=reply, latency_ms=400,
                           at=routed_at + timedelta(minutes=minutes))


def receipts(known: list[Known]) -> tuple[list[DeliveryReceipt], dict[tuple[str, str, str], str]]:
    """The receipts of the known data's dispatches, and the state now of each (agency, dispatch, method)."""
    out: list[DeliveryReceipt] = []
    states: dict[tuple[str, str, str], str] = {}
    seen: dict[str, int] = {}
    for k in known:
        inc = k.incident
        for target in inc.dispatches:
            agency = target.agency_id
            if agency not in DELIVERY:
                continue
            method, trouble = DELIVERY[agency]
            nth = seen[agency] = seen.get(agency, 0) + 1
            dispatch = delivery_id(inc, agency)

            receipt = partial(_receipt, dispatch, agency, method, inc.routed_at)
            if nth == (2 if agency == "sdis35" else 1):
                out += {"undelivered": [receipt(1, 1, "retry", 503, "Service Unavailable"),
                                        receipt(2, 5, "retry", 503, "Service Unavailable"),
                                        receipt(3, 31, "undelivered", 503, "Service Unavailable")],
                        "pending": [receipt(1, 0.1, "retry", 451, "4.7.1 Greylisted, try again later")],
                        "failed": [receipt(1, 0.1, "failed", 400, "service_code inconnu : VOI-99")],
                        "disabled": [receipt(1, 0.1, "disabled", 410, "Gone")]}[trouble]
                states[(agency, str(dispatch), method)] = trouble
            else:
                out.append(receipt(1, 0.05 * nth, "delivered", 250 if method == "email" else 200, None))
                states[(agency, str(dispatch), method)] = "delivered"
    return out, states
