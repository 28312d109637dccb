"""The cascade's events on ``<prefix>.pcs.cascade`` (JSON, keyed by the activation id, so one
activation's events share a partition with its state in the worker's Table).

Ids, codes and counts only: a representative's id, a register entry's opaque id, a status;
never a name, an address or a need (the register stays in its encrypted file).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from veille.pcs.prevention import PreventionAction


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    activation: str
    at: int  # ms since the epoch


class ActivationEvent(_Event):
    type: Literal["activation"] = "activation"
    municipality: str
    source: Literal["alert", "manual"]
    source_id: str
    severity: str
    headline: str = Field(default="", max_length=300)
    category: str = "other"  # the incident category a "besoin d'aide" is reported under
    representatives: tuple[str, ...]


class StepEvent(_Event):
    """The timer's decision: the watch's deadline passed, move to ``step`` of its chain."""

    type: Literal["step"] = "step"
    owner: str
    step: int


class RetryEvent(_Event):
    """The timer's decision: a notification that failed transiently (outcome ``retry``) is due
    to be sent again; ``attempt`` is the retry's number (1 for the first retry)."""

    type: Literal["retry"] = "retry"
    owner: str
    step: int
    notification: str
    attempt: int


class NotifiedEvent(_Event):
    type: Literal["notified"] = "notified"
    notification: str
    municipality: str
    owner: str
    target: str
    step: int
    channel: Literal["email", "sms"]
    outcome: str


class AckEvent(_Event):
    type: Literal["acknowledged"] = "acknowledged"
    municipality: str = ""  # for the store's counts (the worker finds the watch by its key)
    owner: str
    by: str


class CheckStatus(StrEnum):
    seen = "vu"
    needs_help = "besoin_aide"
    absent = "absent"


class CheckEvent(_Event):
    type: Literal["check"] = "check"
    municipality: str = ""
    owner: str
    person: str  # the register entry's opaque id
    status: CheckStatus


class PreventionEvent(BaseModel):
    """A prevention action a town recorded (veille/pcs/prevention.py): counts, never names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["prevention"] = "prevention"
    action: PreventionAction
    at: int
    # The ids of the incidents born from the action (a walk's reports), so the store can join
    # them with the incidents' status events; empty for an action that produced none.
    report_ids: tuple[str, ...] = Field(default=(), max_length=50)

    @property
    def activation(self) -> str:  # the topic's key: the action's id
        return self.action.id


CascadeEvent = Annotated[ActivationEvent | StepEvent | NotifiedEvent | AckEvent | CheckEvent
                         | PreventionEvent | RetryEvent, Field(discriminator="type")]
EVENT = TypeAdapter(CascadeEvent)


AnyEvent = ActivationEvent | StepEvent | NotifiedEvent | AckEvent | CheckEvent | RetryEvent


def store_row(ev: AnyEvent) -> dict[str, object]:
    """The event as the store keeps it: counts only (a check's entry id becomes a keyed digest
    of activation and entry, enough to count each person's latest status, naming nobody)."""
    row: dict[str, object] = {"activation": ev.activation, "kind": ev.type, "owner": "", "target": "",
                              "step": 0, "channel": "", "outcome": "", "status": "",
                              "municipality": getattr(ev, "municipality", ""), "at": ev.at}
    if isinstance(ev, ActivationEvent):
        row.update(event_key=ev.activation, outcome=ev.source)
    elif isinstance(ev, NotifiedEvent):
        row.update(event_key=ev.notification, owner=ev.owner, target=ev.target, step=ev.step,
                   channel=ev.channel, outcome=ev.outcome)
    elif isinstance(ev, RetryEvent):
        row.update(event_key=f"{ev.notification}/{ev.attempt}", owner=ev.owner, step=ev.step)
    elif isinstance(ev, StepEvent):
        row.update(event_key=f"{ev.owner}/{ev.step}", owner=ev.owner, step=ev.step)
    elif isinstance(ev, AckEvent):
        row.update(event_key=f"{ev.owner}/{ev.by}", owner=ev.owner, target=ev.by)
    else:
        digest = hashlib.sha256(f"{ev.activation}/{ev.person}".encode()).hexdigest()[:24]
        row.update(event_key=digest, owner=ev.owner, status=ev.status.value)
    return row


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


Decoded = ActivationEvent | StepEvent | NotifiedEvent | AckEvent | CheckEvent | PreventionEvent | RetryEvent


def decode(raw: bytes) -> Decoded:
    return EVENT.validate_json(raw)


__all__ = [
    "EVENT",
    "AckEvent",
    "ActivationEvent",
    "AnyEvent",
    "CascadeEvent",
    "CheckEvent",
    "CheckStatus",
    "NotifiedEvent",
    "PreventionEvent",
    "RetryEvent",
    "StepEvent",
    "decode",
    "encode",
    "store_row",
]
