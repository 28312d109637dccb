"""``veille router grouping``: the faust worker that groups nearby reports into cases.

WHY A SEPARATE APP, as ``streams/escalation.py``: the open cases live in a faust Table (RocksDB
through ``rocksdict``, changelog topic), and a table recovery that stalls must never block the
routing of new events. So the state lives in ``<prefix>-grouping``, with its own group, process
and tables; the router only re-keys groupable reports onto ``<prefix>.grouping``.

WHAT IT READS. ``<prefix>.grouping``, keyed by H3 cell (docs/grouping.md): the router's
``report`` records and this worker's own ``probe``, ``shadow`` and ``join`` records. The table is
keyed by the same cell and co-partitioned with the topic (faust writes a key's changelog in the
partition of the event being processed), so a rebalance moves a cell's cases with its records.
What one record does is :class:`veille.grouping.cases.Grouper` (pure).

THE TABLE is **windowed** (tumbling windows of the longest rule window plus the grace, expiring
after two of them), keyed by cell: a cell's state is written in the window of the record being
processed (its Kafka timestamp), and read as the latest write (a sequence number) among that
window and its two neighbours (the open cases are carried forward into a new window; a record
whose timestamp is a little behind one already in the next window still reads the latest
state; the grouper itself forgets a case once the cell's event-time clock is past its window
and grace). Old windows expire, and so does the changelog (compact,delete with
the windows' retention): closed cases are forgotten. Decisions never read the wall clock: window
boundaries only decide where the state is stored.

DELIVERY GUARANTEE: at least once. A record's outputs (dispatches, routing records, shadows,
probes, joins) are acknowledged by Kafka before its state is written and before it is acked.
What can be doubled after a kill -9 or a rebalance: the outputs of records processed but not yet
committed. They are re-decided on a state that either has them already (the report is a member
of its case: nothing is sent again) or does not (the same decision is made again on the same
state: the same records, with the same deterministic ids: dispatch ids are the router's
derivation, a case's id is its first report's). So a body can receive the same dispatch twice
(same id: deduplicated), the store the same routing record twice (collapsed by id), and the
grouping topic the same shadow, probe or join twice (a shadow is idempotent, a join of a member
does nothing). Nothing is lost: the source offset is committed after the outputs are durable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import faust

from veille.config import Settings
from veille.grouping.cases import GRACE_MS, Grouper
from veille.grouping.envelope import decode
from veille.grouping.records import Writer
from veille.kafka import Output
from veille.streams import metrics
from veille.streams.output import OutputSender
from veille.streams.stateful import output_router, publish_or_exit, stateful_app
from veille.territory import load_territory
from veille.topics import Topics

log = logging.getLogger("veille.grouping")


def window_seconds(settings: Settings) -> float:
    """The table's window: the longest rule window plus the grace (at least a minute)."""
    grouping = load_territory(settings.territory_dir).rules.grouping
    return max(60.0, grouping.longest_window_minutes * 60 + GRACE_MS / 1000)


def create_grouping_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    app = stateful_app(settings, "grouping", settings.grouping_store)
    router = output_router(settings, territory, topics, "RoutedIncident")
    writer = Writer(topics, settings.dispatch_key.get_secret_value().encode(), router.encode_value)
    grouper = Grouper(territory, writer)
    sender = OutputSender(settings)
    size = window_seconds(settings)
    source = app.topic(topics.grouping, key_type=bytes, value_type=bytes)
    # JSON keys: a windowed table's keys are (cell, (start, end)) tuples; values are the cell's
    # state as JSON bytes, written and read here (no faust model to resolve during recovery).
    cells = app.Table("cells", default=bytes, partitions=settings.partitions,
                      schema=faust.Schema(key_serializer="json", value_serializer="raw"),
                      ).tumbling(size, expires=2 * size)

    async def send(outputs: Sequence[Output]) -> None:
        await publish_or_exit(sender, outputs, log)

    # The stall watchdog (streams/cli.py, as the router's): a join or a rebalance is not a stall,
    # a table recovery that never ends with records waiting is (the process exits, restarted).
    def _revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        metrics.PROGRESS.revoked()

    def _assigned(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        metrics.PROGRESS.assigned_to({(tp.topic, tp.partition) for tp in args[0]})

    app.on_partitions_revoked.connect(_revoked)
    app.on_partitions_assigned.connect(_assigned)

    @app.agent(source, name="group")
    async def group(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            cell = (msg.key or b"").decode(errors="replace")
            try:
                env = decode(event.value)
            except Exception as exc:  # bad input: counted and skipped, never a crash
                log.warning("record %s[%d]@%d skipped: %s", msg.topic, msg.partition, msg.offset, exc)
                metrics.GROUPING_SKIPPED.inc()
                continue
            try:
                window = cells[cell]
                # The latest write of the cell: in this record's window, the previous one (the
                # first record of a window) or the next one (a record whose timestamp is a little
                # behind one already in the next window: producers' clocks differ).
                states = [_state(window.delta(size)), _state(window.current()),
                          _state(window.delta(-size))]
                state = max((x for x in states if x), key=lambda x: x.get("seq", 0), default=None)
                decision = grouper.on_record(cell, state, env)
            except Exception:
                # A bug must not lose the report: it is dispatched on its own, as the router would.
                log.exception("record %s[%d]@%d: grouping failed, dispatched ungrouped",
                              msg.topic, msg.partition, msg.offset)
                if env.report is None:
                    continue
                decision = grouper.ungrouped(env.report)
            if decision.outputs:
                await send(decision.outputs)
            if decision.write:
                decision.state["seq"] = decision.state.get("seq", 0) + 1
                cells[cell] = json.dumps(decision.state, separators=(",", ":")).encode()
            metrics.PROGRESS.batch_done()
            for kind, n in decision.events.items():
                metrics.GROUPING.labels(kind).inc(n)

    return app


def _state(raw: Any) -> Any:
    """The cell's state from the table: JSON bytes as written, or already decoded (faust's
    recovery from the changelog hands the JSON serializer's output back); a fresh copy."""
    if not raw:
        return None
    return json.loads(raw if isinstance(raw, (bytes, str)) else json.dumps(raw))


__all__ = ["create_grouping_app", "window_seconds"]
