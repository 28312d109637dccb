"""The demo's re-routing and escalation step: one refused dispatch re-routed across a boundary,
one overdue dispatch escalated, each printed with its chain (called from ``veille demo``).

It starts ``veille router escalations`` beside the demo's router and plays two bodies:
Montveille's municipal police refuses a burglary (``wrong_location``, with a corrected place
in Saint-Méen-la-Rivière), and nobody acknowledges a theft reported nine hours ago (the
example territory gives the police eight). The chains are read back from ``<prefix>.routed``
and the console shows them (``/console/chain?incident=<id>``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from veille.config import Settings
from veille.consumer import LastStep, StreamRunner
from veille.kafka import Message
from veille.producers.sdk import Publisher
from veille.schemas import codec
from veille.schemas.models import (
    Channel,
    EventType,
    GeoPoint,
    Incident,
    IncidentCategory,
    IncidentStatus,
    RejectionReason,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.statedir import wait_for_process_info
from veille.territory import Territory
from veille.territory.dispatch import dispatch_id
from veille.topics import ROUTED_TYPES, Topics

IN_MONTVEILLE = GeoPoint(lat=48.15, lon=-1.70)
IN_SAINT_MEEN = GeoPoint(lat=48.175, lon=-1.83)
WORKER_ENV = {"VEILLE_ESCALATION_TOLERANCE_SECONDS": "2", "VEILLE_ESCALATION_TICK_SECONDS": "0.5"}


@contextmanager
def escalation_worker(settings: Settings, log_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """``veille router escalations`` as a child process; yields its metrics URL."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "escalations.log").open("wb") as log:
        args = [sys.executable, "-m", "veille.cli", "router", "escalations", "--metrics-port", "0"]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **WORKER_ENV, **env})
        try:
            yield wait_for_process_info(settings.state_dir / "escalations.json", proc)["metrics"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class _Chains(LastStep[Message]):
    """Keeps the routed records of the demo's incidents, in the topic's order."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.records: list[tuple[str, dict[str, Any]]] = []

    def submit(self, item: Message) -> None:
        decoded = codec.decode(item.value, expect=ROUTED_TYPES)
        value = decoded.value
        incident = value.get("incident_id", value.get("id"))
        if decoded.record_type != "RoutedAlert" and str(incident) in self.ids:
            self.records.append((decoded.record_type, value))

    def has(self, kind: str, incident: str) -> bool:
        return any(t == "Redispatch" and v["kind"] == kind and str(v["incident_id"]) == incident
                   for t, v in self.records)


def _read(settings: Settings, ids: set[str], done: Any, timeout: float = 90) -> _Chains:
    chains = _Chains(ids)
    runner = StreamRunner({**settings.kafka_client_config(), "group.id": f"demo-chain-{uuid.uuid4()}",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False},
                          [Topics(settings.topic_prefix).routed], lambda _offsets, _assignment: chains)
    deadline = time.monotonic() + timeout
    runner.run(until=lambda: done(chains) or time.monotonic() > deadline)
    return chains


def chain_lines(territory: Territory, chains: _Chains, incident: str) -> list[str]:
    def name(agency: str) -> str:
        return territory.agencies[agency].name if agency in territory.agencies else agency

    lines = []
    for kind, v in chains.records:
        if str(v.get("incident_id", v.get("id"))) != incident:
            continue
        if kind == "RoutedIncident":
            lines += [f"  routed     -> {name(d['agency_id'])} ({d['service']}, rule {d['rule']})"
                      for d in v["dispatches"]]
        elif kind == "StatusUpdate":
            reason = f" ({v['reason']})" if v.get("reason") else ""
            lines.append(f"  answer     <- {name(v['agency_id'])}: {v['status']}{reason}")
        else:
            what = "re-routed " if v["kind"] == "rerouted" else "escalated "
            rerouted = v["kind"] == "rerouted"
            why = f"step {v['step']}, hop {v['hop']}" if rerouted else f"{v['reason']} deadline missed"
            lines.append(f"  {what} -> {name(v['agency_id'])} ({v['service']}, rule {v['rule']}; {why})")
    return lines


def run_followup_demo(settings: Settings, publisher_settings: Settings, log_dir: Path, env: dict[str, str],
                      territory: Territory, sink_url: str) -> bool:
    """The step itself; True when both chains were seen end to end."""
    key = settings.dispatch_key.get_secret_value().encode()
    now = datetime.now(UTC)
    refused = Incident(id=uuid.uuid4(), municipality="35401", category=IncidentCategory.burglary,
                       severity=Severity.minor, location=IN_MONTVEILLE, occurred_at=now, reported_at=now,
                       channel=Channel.app)
    then = now - timedelta(hours=9)
    overdue = Incident(id=uuid.uuid4(), municipality="35402", category=IncidentCategory.theft,
                       severity=Severity.minor, location=IN_SAINT_MEEN, occurred_at=then, reported_at=then,
                       channel=Channel.phone)
    ids = {str(refused.id), str(overdue.id)}
    print("\nRe-routing and escalation (veille router escalations):")
    with escalation_worker(settings, log_dir, env) as metrics_url, \
            Publisher(publisher_settings, client_id="veille-demo-followup") as pub:
        pub.publish(refused)
        pub.publish(overdue)
        pub.flush(30)
        _read(settings, ids, lambda c: sum(t == "RoutedIncident" for t, _ in c.records) >= 2)
        pub.publish(StatusUpdate(
            id=uuid.uuid4(), incident_id=refused.id, agency_id="pm-35401", status=IncidentStatus.rejected,
            dispatch_id=dispatch_id(key, EventType.incident, str(refused.id), "pm-35401",
                                    ServiceKind.municipal_police),
            at=datetime.now(UTC), reason=RejectionReason.wrong_location, corrected_location=IN_SAINT_MEEN))
        pub.flush(30)
        chains = _read(settings, ids, lambda c: c.has("rerouted", str(refused.id))
                       and c.has("escalated", str(overdue.id)))
    for title, incident in (("refused by Montveille's police, re-routed across the boundary", refused),
                            ("not acknowledged within 8 h, escalated", overdue)):
        print(f" {incident.category.value} {incident.id} ({title}):")
        print(*chain_lines(territory, chains, str(incident.id)), sep="\n")
        print(f"  console: {sink_url}/console/chain?incident={incident.id}")
    print(f" escalation worker metrics: {metrics_url}")
    return chains.has("rerouted", str(refused.id)) and chains.has("escalated", str(overdue.id))


__all__ = ["chain_lines", "escalation_worker", "run_followup_demo"]
