"""One batch of the router, without faust: process → deliver → remember → count.

The faust agent (``streams/app.py``) hands each batch of source messages, through
``RouteLoop`` (``streams/agent.py``), to ``BatchHandler`` and acks them only once it has
delivered them: by then every output of every message is acknowledged by Kafka. Deciding is
the pure :func:`process_batch`. ``handle`` raises only when the batch could not be
handled at all (``BatchFailed``, with its offsets recorded in the ``AttemptLog``) or most
sources are invalid at once (``TooManyInvalid``, from the ``SourceGuard``); the caller then
stops the process without acking, so nothing of the batch is committed. One source mostly
invalid is quarantined instead: its dead letters of the batch become one range letter per
partition (``quarantine``), and the batch goes on like any other.

Metrics are published here, after delivery: they say what happened, not what was attempted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from veille.deadletter import TooManyInvalid
from veille.kafka import Message, Output
from veille.schemas.registry import REGISTRY_WAITING, RegistryUnavailable
from veille.streams import metrics
from veille.streams.attempts import AttemptLog, Key
from veille.streams.dedup import BatchDedup, DedupWindow
from veille.streams.output import OutputSender
from veille.streams.quarantine import SourceGuard, Verdict
from veille.streams.router import SPLIT_REASON, Outcome, OutcomeKind, Router
from veille.topics import Topics

log = logging.getLogger("veille.router")

SEND_BACKOFF_MAX = 10.0
REGISTRY_BACKOFF_MAX = 10.0


class BatchFailed(RuntimeError):
    """The batch could not be handled; its offsets are in the attempt log."""


@dataclass
class Prepared:
    """A batch decided but not yet delivered."""

    messages: list[Message]
    outcomes: list[Outcome]
    seen: BatchDedup


def process_batch(router: Router, messages: Sequence[Message], seen: BatchDedup, outcomes: list[Outcome],
                  observe: Callable[[float], None] = lambda _seconds: None) -> None:
    """Decide ``messages`` from the first without an outcome on, appending to ``outcomes``: no
    Kafka, no metrics but ``observe`` (seconds per message). The ids routed stay pending in
    ``seen`` until the batch is delivered. Raises ``RegistryUnavailable`` where a message needs
    a schema id the registry cannot give now; the caller waits, then carries on."""
    first = len(outcomes)
    t0 = time.perf_counter()
    router.stage(messages[first:])  # reading and routing ahead: each message's share is observed
    share = (time.perf_counter() - t0) / max(1, len(messages) - first)
    for i in range(first, len(messages)):
        seen.owner = i
        t0 = time.perf_counter()
        outcomes.append(router.process(messages[i], seen))
        observe(time.perf_counter() - t0 + share)


def key_of(msg: Message) -> Key:
    return (msg.topic, msg.partition, msg.offset)


class BatchHandler:
    def __init__(self, router: Router, sender: OutputSender, seen: DedupWindow,
                 attempts: AttemptLog, guard: SourceGuard | None = None) -> None:
        self.router = router
        self.sender = sender
        self.seen = seen
        self.attempts = attempts
        self.guard = guard or SourceGuard()
        self.topics: Topics = router.topics
        self._intake_sources: dict[str, str] = {}

    def needs_isolation(self, messages: list[Message]) -> bool:
        return bool(self.attempts) and any(self.attempts.get(key_of(m)) for m in messages)

    async def handle(self, messages: list[Message]) -> None:
        """Handle one batch from start to durable outputs (no pipelining)."""
        if self.needs_isolation(messages):
            # Some of these failed before: one at a time, so a failure names its message.
            for msg in messages:
                await self._isolated(msg)
            self.attempts.save()
            return
        await self.deliver(await self.prepare(messages))

    async def prepare(self, messages: list[Message], previous: Prepared | None = None) -> Prepared:
        """Decide every message of the batch (CPU only). ``previous`` is the batch whose outputs
        are still being delivered: its events already count for de-duplication."""
        try:
            seen = self.seen.batch(previous.seen if previous is not None else None)
            outcomes: list[Outcome] = []
            while len(outcomes) < len(messages):
                try:
                    process_batch(self.router, messages, seen, outcomes, metrics.ROUTING_SECONDS.observe)
                except RegistryUnavailable as exc:
                    seen.owner = len(outcomes)
                    outcomes.append(await self._wait_for_registry(messages[len(outcomes)], seen, exc))
            outcomes = self.quarantine(messages, outcomes)  # TooManyInvalid stops the router
            return Prepared(messages, outcomes, seen)
        except (TooManyInvalid, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.attempts.failed([key_of(m) for m in messages])
            raise BatchFailed(f"{type(exc).__name__}: {exc}") from exc

    def quarantine(self, messages: Sequence[Message], outcomes: list[Outcome]) -> list[Outcome]:
        """Judge the batch per source; the dead letters of quarantined sources become one range
        letter per (source, partition), carried by the first of them."""
        sources = [self._source(m, o) for m, o in zip(messages, outcomes, strict=True)]
        verdict = self.guard.judge(sources, [o.kind == OutcomeKind.dead_letter for o in outcomes])
        self._announce(verdict)
        if not verdict.quarantined:
            return outcomes
        ranges: dict[tuple[str, str, int], list[int]] = {}
        for i, (msg, outcome, source) in enumerate(zip(messages, outcomes, sources, strict=True)):
            if outcome.kind == OutcomeKind.dead_letter and source in verdict.quarantined:
                ranges.setdefault((source, msg.topic, msg.partition), []).append(i)
        if not ranges:
            return outcomes
        outcomes = list(outcomes)
        for (source, _topic, _partition), owners in ranges.items():
            reasons = [outcomes[i].reason or "unknown" for i in owners]
            letter = self.router.range_letter(source, [messages[i] for i in owners], reasons)
            for n, i in enumerate(owners):
                outcomes[i] = Outcome(OutcomeKind.dead_letter, (letter,) if n == 0 else (), reasons[n],
                                      source=source, ranged=True)
        return outcomes

    def _source(self, msg: Message, outcome: Outcome) -> str:
        source = self._intake_sources.get(msg.topic)
        if source is None:
            municipality = self.topics.municipality_of_intake(msg.topic)
            if municipality is None:
                return outcome.source or self.router.source_of(msg)
            source = self._intake_sources[msg.topic] = f"municipality:{municipality}"
        return source

    def _announce(self, verdict: Verdict) -> None:
        for source in verdict.entered:
            state = self.guard.sources[source]
            log.error("source %s quarantined: %d of its last %d messages were invalid; its invalid "
                      "messages are dead-lettered in ranges, its valid ones still routed",
                      source, state.invalid, len(state.recent))
            metrics.SOURCE_QUARANTINED.labels(source).set(1)
            metrics.QUARANTINES.labels(source).inc()
        for source in verdict.released:
            log.warning("source %s released from quarantine: its stream is valid again", source)
            metrics.SOURCE_QUARANTINED.labels(source).set(0)

    async def deliver(self, prepared: Prepared) -> None:
        """Send the batch's outputs until Kafka holds them; then remember and count."""
        try:
            outcomes = await self._deliver(prepared.messages, prepared.outcomes)
        except Exception as exc:
            self.attempts.failed([key_of(m) for m in prepared.messages])
            raise BatchFailed(f"{type(exc).__name__}: {exc}") from exc
        # Only now is an event "seen": had it been recorded before its outputs were durable,
        # a crash in between would make the re-delivery look like a duplicate.
        prepared.seen.commit(lambda owner: outcomes[owner].kind != OutcomeKind.dead_letter)
        self._publish_metrics(prepared.messages, outcomes)

    async def _isolated(self, msg: Message) -> None:
        key = key_of(msg)
        previous = self.attempts.get(key)
        if previous is not None and previous.isolated:
            outcome = self.router.dead_letter(
                msg, "repeated_failure",
                f"handling this message failed {previous.failures} time(s), the last time alone",
                attempts=previous.failures + 1)
            await self._deliver([msg], [outcome])
            self._publish_metrics([msg], [outcome])
            log.error("dead-lettered %s[%d]@%d after %d failed attempts", *key, previous.failures)
        else:
            # Alone: a failure is recorded against this message only (isolated).
            await self.deliver(await self.prepare([msg]))
        self.attempts.done(key)

    async def _wait_for_registry(self, msg: Message, seen: BatchDedup,
                                 exc: RegistryUnavailable) -> Outcome:
        """A schema id not cached while the registry is unreachable: retry with backoff, for
        as long as it takes. Never a dead letter: the message is fine, the registry blinked.
        Nothing of the batch is acked meanwhile; ids already cached kept working until here."""
        backoff = 0.2
        REGISTRY_WAITING.set(1)
        try:
            while True:
                log.warning("%s[%d]@%d: %s; retrying in %.1fs", msg.topic, msg.partition, msg.offset,
                            exc, backoff)
                # Waiting for the registry is not a consumer stall: the alert on
                # veille_schema_registry_unreachable says why nothing moves.
                metrics.PROGRESS.batch_done()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, REGISTRY_BACKOFF_MAX)
                try:
                    return self.router.process(msg, seen)
                except RegistryUnavailable as again:
                    exc = again
        finally:
            REGISTRY_WAITING.set(0)

    async def _deliver(self, messages: list[Message], outcomes: list[Outcome]) -> list[Outcome]:
        """Send until Kafka holds every output; a message whose output is refused for good is
        dead-lettered instead (its other outputs may already be out: at-least-once)."""
        outcomes = list(outcomes)
        loop = asyncio.get_running_loop()
        todo = list(range(len(outcomes)))
        backoff = 0.2
        while todo:
            batch: list[tuple[int, Output]] = [(i, o) for i in todo for o in outcomes[i].outputs]
            result = await loop.run_in_executor(None, self.sender.send, batch)
            if result.ok:
                return outcomes
            permanent = result.permanent
            if permanent and len(batch) > 1:
                # The broker judges record *batches*: one oversized output can sink its
                # neighbours. Only what fails when sent alone is the message's own fault.
                permanent = await loop.run_in_executor(None, self._alone, outcomes, sorted(permanent))
            replaced = []
            for i, error in sorted(permanent.items()):
                if outcomes[i].kind == OutcomeKind.dead_letter:
                    # Dead letters are bounded (veille.deadletter): this is a bug, not input.
                    raise RuntimeError(f"a dead letter was refused by Kafka: {error}")
                msg = messages[i]
                log.error("output of %s[%d]@%d refused by Kafka (%s): dead-lettered",
                          msg.topic, msg.partition, msg.offset, error)
                outcomes[i] = self.router.dead_letter(msg, "output_rejected",
                                                      f"an output was refused by Kafka: {error}")
                replaced.append(i)
            if result.transient:
                metrics.SEND_RETRIES.inc()
                log.warning("%d outputs failed (%s); retrying in %.1fs",
                            len(result.transient), result.transient[0], backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, SEND_BACKOFF_MAX)
                # Permanent refusals are settled; the rest goes again (ids are deterministic).
                continue
            todo = replaced
        return outcomes

    def _alone(self, outcomes: list[Outcome], owners: list[int]) -> dict[int, str]:
        """Send each owner's outputs on their own; the owners still refused, with why."""
        refused: dict[int, str] = {}
        for i in owners:
            result = self.sender.send([(i, o) for o in outcomes[i].outputs])
            if i in result.permanent:
                refused[i] = result.permanent[i]
        return refused

    def _publish_metrics(self, messages: Sequence[Message], outcomes: Sequence[Outcome]) -> None:
        """Every router metric of a delivered batch (events, dispatches, cross-boundary work,
        dead letters, quarantines, pipeline latency). Counters are added up per batch and
        incremented once per label set: a labelled increment takes a lock and a lookup, which
        showed per event in the router's profile."""
        events: Counter[tuple[str, OutcomeKind]] = Counter()
        routed: Counter[tuple[str, str]] = Counter()
        cross: Counter[str] = Counter()
        dead: Counter[str] = Counter()
        quarantined: Counter[str] = Counter()
        now = time.time()
        for msg, outcome in zip(messages, outcomes, strict=True):
            topic = msg.topic
            source = "intake" if self.topics.municipality_of_intake(topic) else topic.rsplit(".", 1)[-1]
            events[(source, outcome.kind)] += 1
            for target in outcome.targets:
                routed[(target.agency_id, target.service.value)] += 1
                if target.cross_boundary:
                    cross[target.service.value] += 1
            if outcome.reported_at is not None:
                metrics.PIPELINE_SECONDS.observe(max(0.0, now - outcome.reported_at.timestamp()))
            if outcome.kind == OutcomeKind.dead_letter:
                dead[outcome.reason or "unknown"] += 1
                if outcome.ranged:
                    quarantined[outcome.source] += 1
                    if outcome.outputs:
                        metrics.RANGE_LETTERS.inc()
        for (source, kind), n in events.items():
            metrics.EVENTS.labels(source, kind).inc(n)
        for (agency, service), n in routed.items():
            metrics.ROUTED.labels(agency, service).inc(n)
        for service, n in cross.items():
            metrics.CROSS_BOUNDARY.labels(service).inc(n)
        for reason, n in dead.items():
            metrics.DEAD_LETTERED.labels(reason).inc(n)
        for source, n in quarantined.items():
            metrics.QUARANTINED_MESSAGES.labels(source).inc(n)
        if dead["unroutable"]:
            metrics.UNROUTABLE.inc(dead["unroutable"])
        splits = sum(1 for o in outcomes if o.kind == OutcomeKind.forwarded and o.reason == SPLIT_REASON)
        if splits:
            metrics.CASE_SPLITS.labels("forwarded").inc(splits)
        for reason in ("split_not_dispatched", "split_first_report"):
            if dead[reason]:
                metrics.CASE_SPLITS.labels(reason).inc(dead[reason])
        if events:
            duplicates = sum(n for (_, kind), n in events.items() if kind == OutcomeKind.duplicate)
            if duplicates:
                metrics.DUPLICATES.inc(duplicates)
