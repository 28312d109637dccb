"""The demo's PCS cascade: the flash flood's CAP alert activates the safeguard plans' alert
chains of the flooded towns that have one (``pcs.yaml``); the representatives are e-mailed
(the demo's SMTP mailbox) with their page's link; one acknowledges and checks on the persons
of their area, as their page does; a silent one is replaced by their substitute after the
plan's delay. Returns the lines to print: per town, who was reached, who acknowledged, who was
checked (counts, never a register name)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from veille.config import Settings
from veille.pcs import events
from veille.pcs.summary import summarise
from veille.security import user_env
from veille.topics import Topics

Process = Callable[..., AbstractContextManager[Any]]


def _read(settings: Settings, until: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"demo-pcs-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(settings.topic_prefix).pcs_cascade])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    try:
                        out.append(events.decode(msg.value() or b""))
                    except ValueError:
                        continue
    finally:
        consumer.close()
    return out


def cascade(settings: Settings, bodies_env: dict[str, str], logs: Path, process: Process,
            alert_id: str) -> list[str]:
    env = user_env(settings, "pcs") if settings.kafka_credentials().mechanism else {}
    args = ["pcs", "worker", "--metrics-port", "0", "--tick-seconds", "1"]
    with process("pcs", args, logs, {**env, **bodies_env}):
        def activated(out: list[Any]) -> bool:
            acts = {e.activation for e in out if isinstance(e, events.ActivationEvent)
                    and e.source_id == alert_id}
            firsts = {(e.activation, e.owner) for e in out if isinstance(e, events.NotifiedEvent)
                      and e.activation in acts}
            wanted = sum(len(e.representatives) for e in out if isinstance(e, events.ActivationEvent)
                         and e.activation in acts)
            return bool(acts) and len(firsts) >= wanted

        evs = _read(settings, activated, timeout=60)
        acts = [e for e in evs if isinstance(e, events.ActivationEvent) and e.source_id == alert_id]
        if not acts:
            return ["\nPCS cascade: the flood's alert activated no town's chain (no pcs.yaml?)"]
        # The first representative of each town acknowledges and checks two persons, as their
        # page (/pcs/<token>) does; the others stay silent.
        producer = Producer(settings.kafka_client_config())
        now = int(time.time() * 1000)
        for a in acts:
            owner = a.representatives[0]
            for ev in (events.AckEvent(activation=a.activation, at=now, owner=owner, by=owner),
                       events.CheckEvent(activation=a.activation, at=now, owner=owner,
                                         person=f"demo-{a.municipality}-1", status=events.CheckStatus.seen),
                       events.CheckEvent(activation=a.activation, at=now, owner=owner,
                                         person=f"demo-{a.municipality}-2",
                                         status=events.CheckStatus.needs_help)):
                producer.produce(Topics(settings.topic_prefix).pcs_cascade,
                                 key=a.activation.encode(), value=events.encode(ev))
        producer.flush(10)
        evs = _read(settings, lambda out: sum(isinstance(e, events.CheckEvent) for e in out)
                    >= 2 * len(acts), timeout=30)
    lines = ["\nPCS cascade (the flood's CAP alert reached the towns' safeguard plans):"]
    towns = summarise(evs)
    for a in sorted(acts, key=lambda a: a.municipality):
        c = towns[a.municipality].counts()
        sent = [e for e in evs if isinstance(e, events.NotifiedEvent) and e.activation == a.activation]
        reached = sorted({e.target for e in sent if e.outcome == "delivered"})
        failed = sorted({e.target for e in sent if e.outcome != "delivered"})
        acked = sorted({e.owner for e in evs
                        if isinstance(e, events.AckEvent) and e.activation == a.activation})
        lines.append(f"  {a.municipality}: reached {', '.join(reached) or 'nobody'}"
                     + (f" (not reached: {', '.join(failed)}, SMS without a gateway here)" if failed else "")
                     + f"; acknowledged: {', '.join(acked) or 'nobody'}; persons checked "
                     f"{c['persons_checked']} (needing help {c['persons_need_help']}, "
                     "reported as an incident by the page)")
    return lines
