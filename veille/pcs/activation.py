"""When a routed CAP alert activates a town's PCS chain, and whom it reaches (pure).

The router sends every alert on a town to its safeguard service (``pcs-chain``); the chain
beyond the town hall is activated only by an *actual* alert or update (not a test, an
exercise or a cancellation) with an info at least as severe as the town's ``activate_from``,
and only the representatives whose area meets that info's ground are reached. A manual
activation (the desk) names the town and an area, or none for the whole town.
"""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry

from veille.pcs.cascade import activation_id
from veille.pcs.plan import PcsPlan, representatives_reached
from veille.schemas.models import Alert, CapSeverity
from veille.territory.alert_area import alert_area
from veille.territory.model import Territory

# CAP severities, most severe first (Unknown never activates).
_RANK = {CapSeverity.Extreme: 4, CapSeverity.Severe: 3, CapSeverity.Moderate: 2,
         CapSeverity.Minor: 1, CapSeverity.Unknown: 0}
ACTIVE_STATUSES = ("Actual",)
ACTIVE_TYPES = ("Alert", "Update")


@dataclass(frozen=True)
class Activation:
    id: str
    municipality: str
    source: str  # "alert" or "manual"
    source_id: str  # the CAP identifier, or the desk's activation id
    severity: str
    representatives: tuple[str, ...]


def from_alert(alert: Alert, territory: Territory, plan: PcsPlan) -> list[Activation]:
    """The activations an alert opens, one per town with a chain it reaches (INSEE order)."""
    if alert.status.value not in ACTIVE_STATUSES or alert.msg_type.value not in ACTIVE_TYPES:
        return []
    out = []
    for insee in sorted(plan.municipalities):
        mp = plan.municipalities[insee]
        infos = [i for i in alert.infos
                 if _RANK[i.severity] >= max(_RANK[mp.activate_from], 1)]
        if not infos:
            continue
        ground, _ = alert_area([a for i in infos for a in i.areas], territory)
        reps = representatives_reached(plan, territory, insee, ground)
        if reps:
            worst = max((i.severity for i in infos), key=_RANK.__getitem__)
            out.append(Activation(activation_id(insee, alert.identifier), insee, "alert",
                                  alert.identifier, worst.value, tuple(r.id for r in reps)))
    return out


def manual(insee: str, request_id: str, territory: Territory, plan: PcsPlan,
           area: BaseGeometry | None = None) -> Activation | None:
    """A safeguard body's chief activates the chain from the desk (whole town by default)."""
    m = territory.municipalities.get(insee)
    if m is None or insee not in plan.municipalities:
        return None
    ground = m.geometry if area is None or area.is_empty else shapely.intersection(area, m.geometry)
    reps = representatives_reached(plan, territory, insee, ground)
    return Activation(activation_id(insee, request_id), insee, "manual", request_id, "manual",
                      tuple(r.id for r in reps))


__all__ = ["Activation", "from_alert", "manual"]
