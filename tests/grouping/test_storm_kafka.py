"""The storm on the real broker: the real router and `veille router grouping` as processes
(docs/grouping.md). Every report in exactly one case, one case per flooded spot, bodies get
~40 opened dispatches plus updates instead of ~2,000 dispatches; and the same after kill -9 of
the grouping worker and of the router mid-storm, with a second worker joining."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub_helpers import HubProcess, committed_offsets, hub_settings, read_topics, wait_for

from veille.grouping.cells import cells_within
from veille.producers.sdk import Publisher
from veille.producers.storm import Storm, storm
from veille.territory import load_territory
from veille.topics import Topics


def _publish(settings: Any, s: Storm, pause_every: int = 0, pause: float = 0.0) -> list[str]:
    with Publisher(settings, client_id="test-storm") as pub:
        for i, inc in enumerate(s.incidents):
            pub.publish(inc)
            if pause_every and i % pause_every == pause_every - 1:
                pub.poll(0)
                time.sleep(pause)
        pub.flush(60)
        return list(pub.acknowledged_ids)


def _routed(settings: Any, ids: set[str], timeout: float = 240) -> dict[str, Any]:
    topics = Topics(settings.topic_prefix)

    def done(out: list[Any]) -> bool:
        return ids <= {str(d.value["id"]) for _, d in out if d.record_type == "RoutedIncident"}

    records = read_topics(settings, [topics.routed], until=done, timeout=timeout)
    found: dict[str, list[Any]] = defaultdict(list)
    for _, d in records:
        if d.record_type == "RoutedIncident":
            found[str(d.value["id"])].append(d.value)
    assert ids <= set(found), f"{len(ids - set(found))} reports never routed"
    for rid, versions in found.items():  # a re-delivery repeats the same decision, never another
        assert len({str(v["case_id"]) for v in versions}) == 1, (rid, versions)
    return {rid: versions[0] for rid, versions in found.items()}


def at_risk(s: Storm) -> set[int]:
    """Spots whose reports have two opening cells (docs/grouping.md, what depends on arrival
    order): a report reaching its opening cell before the shadow of a case opened by the other
    one opens a case of its own. Only these may be split; every other spot must be one case."""
    openers: dict[int, set[str]] = defaultdict(set)
    for inc in s.incidents:
        if str(inc.id) in s.groupable and inc.location is not None:
            openers[s.spot_of[str(inc.id)]].add(cells_within(inc.location.lat, inc.location.lon, 300, 7)[0])
    return {k for k, v in openers.items() if len(v) > 1}


def _check(s: Storm, routed: dict[str, Any]) -> dict[str, int]:
    """Every report in exactly one case, one case per spot but where arrival order may split
    it (at most two cases then); returns counts for the report."""
    cases = {rid: str(r["case_id"]) for rid, r in routed.items() if r["case_id"] is not None}
    assert set(cases) == s.groupable  # sensitive and coordinate-less reports are not grouped
    spots: dict[str, set[int]] = defaultdict(set)
    for rid, case in cases.items():
        spots[case].add(s.spot_of[rid])
        assert cases[case] == case  # the case's first report is in it
    assert all(len(v) == 1 for v in spots.values()), "a case spans two spots"
    per_spot = Counter(next(iter(v)) for v in spots.values())
    split = {k: n for k, n in per_spot.items() if n > 1}
    risky = at_risk(s)
    assert set(split) <= risky and all(n == 2 for n in split.values()), (split, risky)
    assert len(per_spot) == len({s.spot_of[r] for r in s.groupable}) == 40
    return {"cases": len(spots), "grouped": len(cases), "spots_split": len(split),
            "spots_at_risk": len(risky)}


def _dispatches(settings: Any, expected: int) -> Counter[str]:
    topics = Topics(settings.topic_prefix)
    agencies = load_territory().agencies
    records = read_topics(settings, [topics.dispatch(a) for a in agencies], timeout=60,
                          until=lambda out: len({d.value["id"] for _, d in out}) >= expected)
    roles: Counter[str] = Counter()
    seen: set[str] = set()
    for _, d in records:
        if d.value["id"] not in seen:
            seen.add(d.value["id"])
            case = d.value["case"]
            roles[case["role"] if case else "ungrouped"] += 1
    return roles


def _diagnose(settings: Any, ids: set[str]) -> None:
    """Where the reports that never came back are: the grouping topic's records naming them and
    the groups' committed offsets against the partitions' ends (printed)."""
    import json

    from confluent_kafka import Consumer, TopicPartition

    topics = Topics(settings.topic_prefix)
    routed = {str(d.value["id"]) for _, d in read_topics(settings, [topics.routed], until=lambda o: False,
                                                        timeout=20) if d.record_type == "RoutedIncident"}
    missing = ids - routed
    c = Consumer({**settings.kafka_client_config(), "group.id": f"diag-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topics.grouping])
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for m in c.consume(1000, timeout=0.5):
            if m.error() is None and any(i in m.value().decode() for i in missing):
                v = json.loads(m.value())
                print("grouping record", m.partition(), m.offset(), m.key(), v["kind"], v.get("case_id"),
                      (v.get("report") or {}).get("id"))
    for tp in range(settings.partitions):
        _lo, hi = c.get_watermark_offsets(TopicPartition(topics.grouping, tp), timeout=10)
        print("grouping partition", tp, "end", hi)
    c.close()
    print("missing", missing)
    print("committed grouping", committed_offsets(settings, f"{settings.topic_prefix}-grouping",
                                                  [topics.grouping]))


def _workers(settings: Any) -> tuple[HubProcess, HubProcess]:
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    grouping = HubProcess(settings, "router", "grouping", "--metrics-port", "0", "--log-level", "info")
    grouping.start()
    return router, grouping


def test_the_storm_gives_one_case_per_spot(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path, grouping=True)
    s = storm(load_territory(), seed=11, start=datetime.now(UTC) - timedelta(hours=1))
    router, grouping = _workers(settings)
    try:
        acknowledged = _publish(settings, s)
        assert len(acknowledged) == 2000
        routed = _routed(settings, set(acknowledged))
        counts = _check(s, routed)
        ungrouped = len(s.incidents) - counts["grouped"]
        expected = sum(len(r["dispatches"]) + len(r["updates"]) for r in routed.values())
        roles = _dispatches(settings, expected)
        print(f"\nstorm: {counts}, dispatches by role {dict(roles)}")
        # Each body gets the case once (plus bodies new to a case: the next town's services,
        # the monitoring cell on escalation), then updates.
        assert 2 * counts["cases"] <= roles["opened"] <= 4 * counts["cases"], roles
        assert roles["update"] + roles["opened"] >= 2 * counts["grouped"]
        alone = [r for r in routed.values() if r["case_id"] is None]
        assert roles["ungrouped"] == sum(len(r["dispatches"]) for r in alone)
        assert ungrouped == len(s.sensitive | s.unlocated)
    finally:
        grouping.stop()
        router.stop()


def test_kill_9_mid_storm_and_a_second_worker(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path / "a", grouping=True, router_stall_seconds=30)
    second = settings.model_copy(update={"state_dir": tmp_path / "b"})
    s = storm(load_territory(), seed=12, start=datetime.now(UTC) - timedelta(hours=1))
    router, grouping = _workers(settings)
    # Supervised as compose or Kubernetes would: a killed (or stalled, exit 4) process restarts.
    stopping = threading.Event()
    exits: dict[str, list[int]] = {"router": [], "grouping": [], "other": []}
    router.supervise(stopping, exits["router"])
    grouping.supervise(stopping, exits["grouping"])
    acknowledged: list[str] = []
    thread = threading.Thread(target=lambda: acknowledged.extend(_publish(settings, s, 25, 0.25)))
    thread.start()
    topics = Topics(settings.topic_prefix)
    other = None
    try:
        wait_for(lambda: len(read_topics(settings, [topics.routed], until=lambda o: len(o) >= 300,
                                         timeout=5)) >= 300, 120, "storm mid-way")
        grouping.kill()  # kill -9 of both: their supervisors start them again
        router.kill()
        assert thread.is_alive(), "the kills must land mid-storm"
        wait_for(lambda: len(exits["grouping"]) == 1 and len(exits["router"]) == 1, 30, "restarts")
        other = HubProcess(second, "router", "grouping", "--metrics-port", "0", "--log-level", "info")
        other.start().supervise(stopping, exits["other"])  # a second worker joins mid-storm
        time.sleep(5)
        grouping.kill()
        thread.join(300)
        assert len(acknowledged) == 2000
        try:
            routed = _routed(settings, set(acknowledged), timeout=300)
        except AssertionError:
            _diagnose(settings, set(acknowledged))
            raise
        counts = _check(s, routed)
        print(f"\nafter kill -9 and a second worker: {counts}, exits {exits}")
    finally:
        stopping.set()
        thread.join(10)
        for p in (other, grouping, router):
            if p is not None:
                p.stop()
