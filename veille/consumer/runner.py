"""The hub's one consumer loop: every confluent-kafka consumer runs on ``StreamRunner``.

The runner owns the consumer and everything that is about Kafka rather than about the work:
polling, assignment and revocation, pausing the partitions while the chain pushes back
(``MessageRejected``), a fenced static member replaced by a new consumer, errors, stop. The
work is a chain of steps (``veille/consumer/steps.py``) that a factory builds for each
assignment (getsentry/arroyo's ``StreamProcessor`` and strategy factory):

* **group mode** (``group=True``): subscribe; the chain is built on assignment and, on
  revocation, closed and joined within ``revoke_timeout`` — what it holds is written and
  committed if that succeeds at once, else dropped, uncommitted: the next owner reads it
  again. The eager assignor (librdkafka's default) revokes every partition at once, so a
  dropped batch never skips messages of a partition kept.
* **read-all mode** (``group=False``): every partition of the topics (or those numbered
  ``only``: a state store restoring its changelog) assigned from the beginning, no group, no
  commits (a read model rebuilt at each start); the chain learns the high watermarks of the
  start (``Assignment.high``) to tell when it caught up.

``run`` returns on ``stop()``, on ``until()``, or after ``max_idle`` seconds without a
message; the chain is then joined (flushed, committed). If a step raises, ``run`` closes the
consumer without joining: nothing more is committed, the rest is read again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Gauge

from veille.consumer.steps import MessageRejected, Offsets, ProcessingStep
from veille.kafka import Message, committed_lag

log = logging.getLogger("veille.consumer")

LAG_REFRESH_SECONDS = 5.0  # while the chain pushes back, nothing is committed: keep the lag true


class Fenced(RuntimeError):
    """Another member took this consumer's group.instance.id (after a coordinator failover)."""


@dataclass(frozen=True)
class Assignment:
    partitions: tuple[TopicPartition, ...]
    # (topic, partition) -> high watermark when assigned (read-all mode only)
    high: Mapping[tuple[str, int], int] = field(default_factory=dict)


StepFactory = Callable[[Offsets, Assignment], ProcessingStep[Message]]


def check_error(err: KafkaError) -> None:
    """A consumer event: raise ``Fenced`` or ``KafkaException`` when the consumer is done, else log.

    A fenced static member (FENCED_INSTANCE_ID after a broker restart) arrives as a _FATAL
    event whose fatal() flag may not be set: that consumer is done, a new one rejoins."""
    if "fenced" in (err.str() or "").lower():
        raise Fenced(err.str())
    if err.fatal() or err.code() == KafkaError._FATAL:
        raise KafkaException(err)
    log.warning("consumer error: %s", err)


class StreamRunner:
    def __init__(self, config: Mapping[str, Any], topics: Sequence[str], factory: StepFactory, *,
                 group: bool = True, lag: Gauge | None = None, on_rejoin: Callable[[], None] | None = None,
                 max_poll: int = 500, poll_timeout: float = 0.2, revoke_timeout: float = 0.0,
                 join_timeout: float = 30.0, only: Collection[int] | None = None) -> None:
        self.config = dict(config)
        self.only = None if only is None else frozenset(only)  # read-all mode: these partition numbers
        self.topics = list(topics)
        self.factory = factory
        self.group = group
        self.lag = lag
        self.on_rejoin = on_rejoin
        self.max_poll = max_poll
        self.poll_timeout = poll_timeout
        self.revoke_timeout = revoke_timeout
        self.join_timeout = join_timeout
        self.consumer = Consumer(self.config)
        self.assigned: list[TopicPartition] = []
        self._chain: ProcessingStep[Message] | None = None
        self._backlog: deque[Message] = deque()  # polled, not yet taken by the chain
        self._paused = False
        self._held: set[tuple[str, int]] = set()  # paused by the chain (hold), not by backpressure
        self._stop = threading.Event()
        self._lag_at = 0.0

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to finish: join the chain (flush, commit), close (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, until: Callable[[], bool] | None = None, max_idle: float | None = None) -> None:
        self._start()
        idle_since: float | None = None
        try:
            while not self._stop.is_set() and not (until and until()):
                try:
                    got = self._poll_once()
                except Fenced as exc:
                    self._rejoin(exc)
                    continue
                now = time.monotonic()
                if got or not self.assigned or self._backlog:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif max_idle is not None and now - idle_since >= max_idle:
                    break
            self._finish(self.join_timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        with contextlib.suppress(RuntimeError, KafkaException):  # already closed
            self.consumer.close()

    # -- the loop ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.group:
            self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        else:
            self._assign_all()

    def _poll_once(self) -> int:
        self._feed()
        timeout = min(self.poll_timeout, 0.05) if self._paused else self.poll_timeout
        got = 0
        for msg in self.consumer.consume(num_messages=self.max_poll, timeout=timeout):
            err = msg.error()
            if err is not None:
                check_error(err)
                continue
            self._backlog.append(Message.of(msg))
            got += 1
        self._feed()
        if self._chain is not None:
            self._chain.poll()
        if self._paused and time.monotonic() - self._lag_at >= LAG_REFRESH_SECONDS:
            self.report_lag()
        return got

    def _feed(self) -> None:
        """Hand the backlog to the chain in order; pause while it pushes back."""
        chain = self._chain
        if chain is None:
            return
        while self._backlog:
            try:
                chain.submit(self._backlog[0])
            except MessageRejected:
                if not self._paused and self.assigned:
                    self.consumer.pause(self.assigned)
                    self._paused = True
                    self.report_lag()
                return
            self._backlog.popleft()
        if self._paused:
            self.consumer.resume([tp for tp in self.assigned if (tp.topic, tp.partition) not in self._held])
            self._paused = False

    def _finish(self, timeout: float) -> None:
        """Join the chain: what the backlog still holds first, then what the steps hold."""
        chain = self._chain
        if chain is None:
            return
        with contextlib.suppress(MessageRejected):
            while self._backlog:
                chain.submit(self._backlog[0])
                self._backlog.popleft()
        chain.close()
        chain.join(timeout)
        self._chain = None

    # -- Offsets, for the chain ----------------------------------------------------------------

    def commit(self, offsets: Sequence[TopicPartition]) -> bool:
        try:
            self.consumer.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:
            # What was written stays written; a lost commit only means a replay.
            log.warning("offset commit failed (the batch will be read again): %s", exc)
            return False
        self.report_lag()
        return True

    def hold(self, partitions: Sequence[TopicPartition]) -> None:
        mine = {(tp.topic, tp.partition) for tp in self.assigned}
        held = [tp for tp in partitions if (tp.topic, tp.partition) in mine]
        if held:
            self.consumer.pause(held)
            self._held |= {(tp.topic, tp.partition) for tp in held}

    def release(self, partitions: Sequence[TopicPartition]) -> None:
        released = [tp for tp in partitions if (tp.topic, tp.partition) in self._held]
        if released:
            self._held -= {(tp.topic, tp.partition) for tp in released}
            if not self._paused:
                self.consumer.resume(released)

    def report_lag(self) -> None:
        self._lag_at = time.monotonic()
        if self.lag is None or not self.assigned or not self.group:
            return
        try:
            lags = committed_lag(self.consumer, self.assigned, timeout=5, fetching=not self._paused)
        except KafkaException:
            return
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(lag)

    # -- assignment ----------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(tp.topic, tp.partition) for tp in partitions])
        self.assigned = list(partitions)
        self._chain = self.factory(self, Assignment(tuple(partitions)))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", [(tp.topic, tp.partition) for tp in partitions])
        self._backlog.clear()  # uncommitted: the next owner reads them again
        self._paused = False
        self._held.clear()
        self._finish(self.revoke_timeout)
        self.assigned = []

    def _assign_all(self) -> None:
        """Every partition of the topics from the beginning; waits until all are readable (one
        leader still moving must not leave a partition out)."""
        high: dict[tuple[str, int], int] = {}
        while not self._stop.is_set() and not high and self.only != frozenset():
            try:
                for topic in self.topics:
                    meta = self.consumer.list_topics(topic, timeout=5).topics[topic]
                    if meta.error is not None or not meta.partitions:
                        raise KafkaException(meta.error)
                    for p in meta.partitions:
                        if self.only is not None and p not in self.only:
                            continue
                        tp = TopicPartition(topic, p)
                        high[(topic, p)] = self.consumer.get_watermark_offsets(tp, timeout=5)[1]
            except (KafkaException, KeyError) as exc:
                high = {}
                log.warning("%s not readable yet (%s)", ", ".join(self.topics), exc)
                self._stop.wait(2)
        partitions = [TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(high)]
        self.consumer.assign(partitions)
        self.assigned = partitions
        self._chain = self.factory(self, Assignment(tuple(partitions), high))

    def _rejoin(self, exc: Fenced) -> None:
        """A fenced static member's consumer is unusable, but nothing is lost: what was not
        committed is read again by a fresh consumer (same group.instance.id)."""
        log.warning("consumer fenced (%s): rejoining the group with a new consumer", exc)
        if self.on_rejoin is not None:
            self.on_rejoin()
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        if self._chain is not None:
            self._chain.close()  # not joined: what it holds comes again from the committed offsets
            self._chain = None
        self._backlog.clear()
        self.assigned, self._paused = [], False
        self._held.clear()
        self.consumer = Consumer(self.config)
        self._start()
