"""``veille router escalations``: the faust worker that re-routes refusals and escalates overdue dispatches.

WHY A SEPARATE APP. This is stateful stream processing (a faust Table with a changelog
topic, in RocksDB through ``rocksdict``, and a faust timer), and the main router once lost a
faust Table because a stalled table recovery kept restarted routers from ever resuming (see
``streams/app.py``). So the state lives in *another* faust app, ``<prefix>-escalations``,
with its own consumer group, process and tables: a stalled recovery here delays re-routings
and escalations, never the routing of new events, which needs no state of this worker.

WHAT IT READS. Only ``<prefix>.routed``: every RoutedIncident (with its dispatch targets),
every StatusUpdate the router accepted (its dispatch id checked, re-encoded) and the
Redispatch records this worker publishes. The router keys all three by the incident id (its
16 bytes) with one producer configuration, so one incident's records share a partition: the
table is co-partitioned with its source, no ``group_by`` repartition is needed, and a
rebalance moves an incident's state with its records. What is done with each record is
:class:`veille.streams.followup.FollowUp` (pure).

THE CLOCK (event time). Each partition has a clock: the latest event time read on it
(RoutedIncident: ``reported_at``; StatusUpdate: ``at``; Redispatch: ``routed_at``; each capped
at the wall clock when read) plus the wall time elapsed since the last record of that
partition; once no record has come for ``escalation_idle_seconds`` (default 10 s) the
partition is caught up and its clock is the wall clock (a quiet partition, or one whose last
record is old, still fires on time). It never runs ahead of the wall clock, so nothing fires
early. During a replay records come back to back, the clock follows their own times, and an
acknowledgement read after its incident cancels the deadline before the clock can reach it:
no storm (a replay stalled longer than the idle window mid-way would switch to the wall
clock: a limit, documented in docs/rerouting.md). A deadline fires once the clock is
``escalation_tolerance_seconds`` (default 30 s) past it: a late acknowledgement still in
flight within that tolerance cancels it. The latest event time is persisted in the table
(``~clock:<partition>``) when it advances by a second, so a restarted worker resumes with it.

THE TIMER cannot write a faust Table (faust needs the current event's partition), so it only
publishes: the Dispatch to the supervisor's topic and a Redispatch on ``<prefix>.routed``;
the agent reads that Redispatch back and records the deadline as escalated. Until then the
worker remembers in memory what it published (``in_flight``).

DELIVERY GUARANTEE: at least once, each deadline escalated once *by id*. What can be
doubled: an escalation published just before a kill -9 or a rebalance, whose Redispatch was
not read back and committed yet (the next owner of the partition publishes it again), and a
re-routing whose refusal was re-read after a crash. Both carry the same deterministic id
(keyed hash of incident, missed deadline, overdue dispatch, supervisor, service; for a
re-routing the router's own derivation for incident, body, service): bodies deduplicate
dispatches on their id and the store collapses them (``redispatches`` ORDER BY id), so a
double is harmless. Nothing can be lost: outputs are acknowledged by Kafka before the agent
moves on, and the table's changelog is written before the source offset is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from veille.config import Settings
from veille.kafka import Output
from veille.schemas import codec
from veille.schemas.registry import resolver_from_settings
from veille.streams import metrics
from veille.streams.followup import FollowUp, Result, State, ms
from veille.streams.output import OutputSender
from veille.streams.stateful import output_router, publish_or_exit, stateful_app
from veille.territory import load_territory
from veille.topics import ROUTED_TYPES, Topics

log = logging.getLogger("veille.escalations")
CLOCK_KEY = b"~clock:%d"
CLOSED = b"-"  # the value of an incident whose every dispatch is closed (nothing pending)
CLOCK_PERSIST_MS = 1000


class PartitionClocks:
    """The event-time clock of each source partition (module docstring)."""

    def __init__(self, idle_seconds: float = 10.0) -> None:
        self.idle_seconds = idle_seconds
        self.mark: dict[int, int] = {}  # latest event time read (ms)
        self.seen: dict[int, float] = {}  # wall time (s) of the last record read
        self.last: dict[int, int] = {}  # last value returned: the clock never goes back
        self.persisted: dict[int, int] = {}

    def see(self, partition: int, event_ms: int) -> None:
        wall = time.time()
        self.mark[partition] = max(self.mark.get(partition, 0), min(event_ms, int(wall * 1000)))
        self.seen[partition] = wall

    def restore(self, partition: int, mark: int) -> None:
        if partition not in self.mark:
            self.mark[partition] = self.persisted[partition] = mark
            self.seen[partition] = time.time()

    def now(self, partition: int) -> int | None:
        if partition not in self.mark:
            return None
        wall = time.time()
        idle = wall - self.seen[partition]
        value = int(wall * 1000) if idle >= self.idle_seconds else \
            min(self.mark[partition] + int(idle * 1000), int(wall * 1000))
        value = max(value, self.last.get(partition, 0))
        self.last[partition] = value
        return value

    def to_persist(self, partition: int) -> int | None:
        mark = self.mark.get(partition)
        if mark is None or mark - self.persisted.get(partition, 0) < CLOCK_PERSIST_MS:
            return None
        self.persisted[partition] = mark
        return mark


def event_time(record_type: str, value: dict[str, Any]) -> int | None:
    times = {"RoutedIncident": "reported_at", "StatusUpdate": "at", "Redispatch": "routed_at",
             "CaseSplit": "at"}
    field = times.get(record_type)
    return None if field is None else ms(value[field])


def create_escalation_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    app = stateful_app(settings, "escalations", settings.escalation_store)
    router = output_router(settings, territory, topics, "Redispatch")
    resolver = resolver_from_settings(settings)
    follow = FollowUp(territory, topics, dispatch_key=settings.dispatch_key.get_secret_value().encode(),
                      encode=router.encode_value,
                      tolerance_ms=int(settings.escalation_tolerance_seconds * 1000),
                      max_hops=settings.reroute_max_hops)
    sender = OutputSender(settings)
    clocks = PartitionClocks(settings.escalation_idle_seconds)
    in_flight: set[tuple[str, str, str]] = set()
    source = app.topic(topics.routed, key_type=bytes, value_type=bytes)
    # Keys: the incident id (text) or ~clock:<partition>; values: JSON, written by load/store.
    states = app.Table("incidents", default=None, key_type=bytes, value_type=bytes,
                       partitions=settings.partitions)

    def load(key: bytes) -> Any:
        raw = states.get(key)
        return None if raw is None else json.loads(raw)

    def store(key: bytes, value: Any) -> None:
        states[key] = json.dumps(value, separators=(",", ":")).encode()

    async def send(outputs: Sequence[Output]) -> None:
        await publish_or_exit(sender, outputs, log)

    def count(result: Result) -> None:
        for name, label in result.events:
            if name == "rerouted":
                metrics.REROUTED.labels(label).inc()
                if label == "hop_limit":
                    metrics.REROUTE_HOP_LIMIT.inc()
            elif name == "exhausted":
                metrics.REROUTE_EXHAUSTED.inc()
            elif name == "ignored":
                metrics.REFUSALS_IGNORED.labels(label).inc()
            elif name == "split":
                metrics.SPLITS_TIMED.labels(label).inc()

    @app.agent(source, name="follow")
    async def follow_up(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                decoded = codec.decode(event.value, expect=ROUTED_TYPES, resolver=resolver)
                if decoded.record_type == "RoutedAlert":
                    continue
                value = decoded.value
                when = event_time(decoded.record_type, value)
                kind = decoded.record_type
                incident = str(value["id"] if kind == "RoutedIncident" else value["incident_id"])
                key = incident.encode()
                raw = states.get(key)
                # A closed incident is kept as a marker, not deleted: a routing record the router
                # re-delivers after a crash must not start its deadlines again.
                result = Result() if raw == CLOSED else follow.on_record(
                    None if raw is None else json.loads(raw), kind, value, msg.partition)
            except Exception as exc:  # bad input: counted and skipped, never a crash
                log.warning("record %s[%d]@%d skipped: %s", msg.topic, msg.partition, msg.offset, exc)
                metrics.FOLLOWUP_SKIPPED.inc()
                continue
            if result.outputs:
                await send(result.outputs)
            if result.state is not None:
                if _finished(follow, result.state):
                    states[key] = CLOSED
                else:
                    store(key, result.state)
            if decoded.record_type == "Redispatch" and value["kind"] == "escalated":
                in_flight.discard((incident, str(value["previous_id"]), value["reason"]))
            count(result)
            if when is not None:
                clocks.see(msg.partition, when)
                mark = clocks.to_persist(msg.partition)
                if mark is not None:
                    store(CLOCK_KEY % msg.partition, mark)

    @app.timer(interval=settings.escalation_tick_seconds)
    async def fire_due() -> None:
        # Never on a table being recovered: a state read half-restored could miss an acknowledgement.
        recovery = app.tables.recovery
        if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
            return
        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.routed}
        for p in mine:
            if p not in clocks.mark:
                mark = load(CLOCK_KEY % p)
                if isinstance(mark, int):
                    clocks.restore(p, mark)
        outputs: list[Output] = []
        fired: list[tuple[str, str]] = []
        pending = 0
        for key, raw in list(states.items()):
            if key.startswith(b"~") or raw is None or raw == CLOSED:
                continue
            state = json.loads(raw)
            if state.get("p") not in mine:
                continue
            pending += len(follow.pending(state))
            clock = clocks.now(state["p"])
            if clock is None:
                continue
            for due in follow.due(key.decode(), state, clock):
                if due.key in in_flight:
                    continue
                in_flight.add(due.key)
                outputs += due.outputs
                fired.append(due.event)
        metrics.PENDING_DEADLINES.set(pending)
        if outputs:
            await send(outputs)
        for name, deadline in fired:
            if name == "escalated":
                metrics.ESCALATED.labels(deadline).inc()
            else:
                metrics.ESCALATION_NO_SUPERVISOR.inc()

    return app


def _finished(follow: FollowUp, state: State) -> bool:
    """Whether nothing of the incident can happen any more (its value becomes :data:`CLOSED`):
    every dispatch closed or an escalation, no deadline pending."""
    entries = state["d"].values()
    return bool(entries) and not follow.pending(state) and all(e["closed"] or e["esc"] for e in entries)


__all__ = ["PartitionClocks", "create_escalation_app", "event_time"]
