"""The demo's storm step (docs/grouping.md): 2,000 reports of 40 flooded spots in 30 minutes,
published on the municipalities' intake topics, grouped by ``veille router grouping``; prints the
cases, one spanning two municipalities, and the dispatches the bodies got instead of ~2,000."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer

from veille.config import Settings
from veille.producers.sdk import Publisher
from veille.producers.storm import storm
from veille.schemas import codec
from veille.territory import Territory
from veille.topics import Topics


def _routed(settings: Settings, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"demo-storm-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(settings.topic_prefix).routed])
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not ids <= set(found):
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                decoded = codec.decode(msg.value())
                if decoded.record_type == "RoutedIncident" and str(decoded.value["id"]) in ids:
                    found[str(decoded.value["id"])] = decoded.value
    finally:
        consumer.close()
    return found


def storm_lines(settings: Settings, publisher_settings: Settings, territory: Territory,
                seed: int = 25) -> list[str]:
    if not settings.grouping:
        return ["\nStorm: grouping is off (VEILLE_GROUPING=false): skipped"]
    s = storm(territory, seed=seed, start=datetime.now(UTC) - timedelta(hours=1))
    with Publisher(publisher_settings, client_id="veille-demo-storm") as pub:
        for i, inc in enumerate(s.incidents):
            pub.publish(inc)
            if i % 100 == 0:
                pub.poll(0)
        pub.flush(60)
    routed = _routed(settings, set(s.spot_of), 180)
    grouped = {rid: str(r["case_id"]) for rid, r in routed.items() if r["case_id"] is not None}
    towns: dict[str, set[str]] = defaultdict(set)
    for rid, case in grouped.items():
        towns[case].add(routed[rid]["municipality"])
    reports = Counter(grouped.values())
    opened = sum(len(r["dispatches"]) for rid, r in routed.items() if rid in grouped)
    updates = sum(len(r["updates"]) for r in routed.values())
    name = {c: m.name for c, m in territory.municipalities.items()}
    lines = [f"\nStorm (veille router grouping): {len(s.incidents)} reports of {len(s.spots)} flooded spots "
             f"in 30 minutes, {len(routed)} routed back",
             f"  grouped: {len(grouped)} into {len(reports)} cases; not grouped: "
             f"{len(s.unlocated)} without coordinates, {len(s.sensitive)} sensitive",
             f"  bodies have {opened} dispatches to answer (cases) + {updates} updates folded into "
             f"them, instead of {opened + updates} dispatches to answer "
             f"(reports per case: max {max(reports.values(), default=0)}, "
             f"median {sorted(reports.values())[len(reports) // 2] if reports else 0})"]
    across = [(case, sorted(t)) for case, t in towns.items() if len(t) > 1]
    lines.append(f"  cases spanning two municipalities: {len(across)}")
    for case, t in across[:3]:
        lines.append(f"    case {case[:8]}: {reports[case]} reports from "
                     + " and ".join(f"{c} {name.get(c, c)}" for c in t))
    return lines


__all__ = ["storm_lines"]
