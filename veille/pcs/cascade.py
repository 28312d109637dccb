"""The cascade's decisions, pure: who is notified when a town's PCS chain is activated, and
what happens when a representative stays silent.

An **activation** (a routed CAP alert reaching a town's ``pcs-chain``, or a manual activation
from the desk) has a deterministic id: a UUID5 of the town and the source's id, so the same
alert read twice is the same activation. Each representative whose area meets the alert's
ground opens a **watch** ``(activation, owner)`` whose chain is the owner, their substitutes
in plan order, then the safeguard cell. Step 0 notifies the owner; a watch not acknowledged by
its deadline (``ack_minutes`` of the plan) moves one step on and notifies the next of the
chain (a substitute takes over the owner's area and persons); the cell is the last step and
has no deadline. Every notification has a deterministic id (UUID5 of activation, owner, step,
target): a worker that re-reads its input after a crash derives the same ids, and senders
skip an id they already sent, so nobody is notified twice for one activation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from veille.pcs.plan import Contact, MunicipalPlan

# Fixed namespace: ids must be the same in every process and release.
NAMESPACE = uuid.UUID("6d1f7c8e-3b0a-5e55-9a61-70c5e0a1d2f4")
CELL = "cellule"


def activation_id(insee: str, source_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"activation/{insee}/{source_id}"))


def notification_id(activation: str, owner: str, step: int, target: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"notification/{activation}/{owner}/{step}/{target}"))


@dataclass(frozen=True)
class Notification:
    id: str
    activation: str
    municipality: str
    owner: str  # the representative whose area (and persons) this is about
    target: str  # who is told: the owner, a substitute or CELL
    step: int
    contact: Contact


@dataclass(frozen=True)
class Watch:
    activation: str
    municipality: str
    owner: str
    step: int
    deadline_ms: int | None  # None: acknowledged, or at the cell (end of the chain)
    acknowledged_by: str | None = None

    @property
    def key(self) -> str:
        return f"{self.activation}/{self.owner}"


def chain(plan: MunicipalPlan, owner: str) -> tuple[str, ...]:
    rep = plan.representative(owner)
    subs = rep.substitutes if rep else ()
    return (owner, *subs, CELL)


def _notify(plan: MunicipalPlan, watch: Watch) -> Notification:
    target = chain(plan, watch.owner)[watch.step]
    if target == CELL:
        contact = plan.cell.contact
    else:
        rep = plan.representative(target)
        assert rep is not None  # the plan's validation refuses unknown substitutes
        contact = rep.contact
    return Notification(notification_id(watch.activation, watch.owner, watch.step, target),
                        watch.activation, watch.municipality, watch.owner, target, watch.step,
                        contact)


def _deadline(plan: MunicipalPlan, watch: Watch, from_ms: int) -> int | None:
    last = len(chain(plan, watch.owner)) - 1
    return None if watch.step >= last else from_ms + int(plan.ack_minutes * 60_000)


def start(plan: MunicipalPlan, activation: str, insee: str, owners: tuple[str, ...],
          at_ms: int) -> list[tuple[Watch, Notification]]:
    """The watches an activation opens and their first notifications (plan order)."""
    out = []
    for owner in dict.fromkeys(owners):
        w = Watch(activation, insee, owner, 0, None)
        w = replace(w, deadline_ms=_deadline(plan, w, at_ms))
        out.append((w, _notify(plan, w)))
    return out


def expire(plan: MunicipalPlan, watch: Watch, now_ms: int) -> tuple[Watch, Notification | None]:
    """The watch after its deadline (if passed and not acknowledged): the next of the chain."""
    if watch.deadline_ms is None or watch.acknowledged_by is not None or now_ms < watch.deadline_ms:
        return watch, None
    nxt = replace(watch, step=watch.step + 1)
    nxt = replace(nxt, deadline_ms=_deadline(plan, nxt, watch.deadline_ms))
    return nxt, _notify(plan, nxt)


def notification_for(plan: MunicipalPlan, watch: Watch) -> Notification:
    """The notification of the watch's current step (the same id as when it was first sent)."""
    return _notify(plan, watch)


def next_retry_ms(retries_done: int, now_ms: int, *, max_retries: int, base_seconds: float,
                  cap_seconds: float) -> int | None:
    """When to send again a notification that failed transiently, after ``retries_done``
    retries: exponential backoff (base, 2 x base, 4 x base…, capped); None once ``max_retries``
    retries were made (the outcome stays ``retry``, the chain's deadline still escalates)."""
    if retries_done >= max_retries:
        return None
    return now_ms + int(min(base_seconds * 2 ** retries_done, cap_seconds) * 1000)


def acknowledge(plan: MunicipalPlan, watch: Watch, by: str) -> Watch:
    """Acknowledged by anyone already notified on this watch (the owner, a substitute who took
    over, the cell); a later step's acknowledgement does not reopen anything."""
    notified = chain(plan, watch.owner)[: watch.step + 1]
    if watch.acknowledged_by is not None or by not in notified:
        return watch
    return replace(watch, acknowledged_by=by, deadline_ms=None)


__all__ = ["CELL", "Notification", "Watch", "acknowledge", "activation_id", "chain", "expire",
           "next_retry_ms", "notification_for", "notification_id", "start"]
