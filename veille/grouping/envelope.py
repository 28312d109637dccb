"""The records of ``<prefix>.grouping`` (docs/grouping.md): an internal JSON envelope.

Internal (only the router's two apps write and read this topic), so not an Avro record of
the catalog: the contract bodies and the store read is Dispatch v2 and RoutedIncident v2. The
envelope is versioned (``v``) and validated here, at the boundary; a record that does not
validate is counted and skipped by the worker, never a crash. Kinds:

* ``report``: from the router, keyed by the H3 cell holding the report's point: the
  RoutedIncident fields, the routing decision's targets, the original event (``payload``,
  base64: it may hold the reporter's contact, so the topic is restricted like the dispatch
  topics), and ``where`` (the municipality the point is in, which routed it).
* ``probe``: the same report, forwarded by its cell to the cell that decides it (the lowest
  cell its grouping disk meets, :func:`veille.grouping.cells.decider_cell`).
* ``open``: a report its deciding cell found no case for, forwarded to the cell that opens
  cases there (the lowest cell met by twice the radius), which looks again, then opens it.
* ``shadow``: a case opened near another cell, sent to that cell's key so that reports decided
  there can join it.
* ``join``: a report decided (in a cell holding the case's shadow) to join a case owned by
  another cell: forwarded to the owner, which alone counts it and dispatches.
"""

from __future__ import annotations

import base64
import json
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from veille.schemas.models import DispatchTarget

VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Report(Strict):
    id: UUID
    municipality: str  # declared (the intake topic's town)
    where: str  # where the point is: the municipality that routed it
    category: str
    severity: str
    channel: str
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    occurred_at: int  # epoch milliseconds
    reported_at: int
    routed_at: int
    pseudonym: str | None = None
    targets: tuple[DispatchTarget, ...]
    payload: str  # the original event, base64

    def payload_bytes(self) -> bytes:
        return base64.b64decode(self.payload)


class Shadow(Strict):
    id: UUID  # the case
    rule: str  # its grouping rule
    category: str
    lat: float
    lon: float
    first_at: int
    window_ms: int
    radius_m: float
    owner: str  # the cell owning the case


class Envelope(Strict):
    v: Literal[1] = 1
    kind: Literal["report", "probe", "open", "shadow", "join"]
    report: Report | None = None
    shadow: Shadow | None = None
    case_id: UUID | None = None  # join: the case to join


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes) -> Envelope:
    """Raises ``ValueError`` (pydantic's ``ValidationError`` is one) on anything malformed."""
    env = Envelope.model_validate(json.loads(raw))
    if (env.kind in ("report", "probe", "open", "join")) != (env.report is not None):
        raise ValueError(f"a {env.kind} record needs a report and only then")
    if (env.kind == "shadow") != (env.shadow is not None) \
            or (env.kind == "join") != (env.case_id is not None):
        raise ValueError(f"a {env.kind} record has the wrong parts")
    return env


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


__all__ = ["Envelope", "Report", "Shadow", "b64", "decode", "encode"]
