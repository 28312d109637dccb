"""``veille deliver run``: every dispatch pushed to its body the way the body works.

Assembled here, in one place: the dispatch topics are read on the consumer runtime
(``veille/consumer``, group ``<prefix>.deliver``, a static member like the sink), each dispatch
goes through ``DeliverStep`` (offsets committed only once delivered) to the ``Engine`` (one
queue per destination), every attempt's ``DeliveryReceipt`` goes to ``<prefix>.delivery``
through the deliverer's one producer (idempotent, acks=all, flushed before each commit), and
the ``Open311Tracker`` reads the statuses of what was sent to Open311 bodies back as
StatusUpdates on ``<prefix>.status``.

Guarantee: at-least-once per method, with the dispatch id as the idempotency key everywhere
(``webhook-id`` and ``Idempotency-Key``, the e-mail's ``Message-ID``, the Open311 request's
``attribute[veille_dispatch_id]``): after a crash, a receiver that de-duplicates on it sees
each dispatch once.
"""

from __future__ import annotations

import logging
from typing import Any

from veille.config import Settings
from veille.consumer import Assignment, Offsets, ProcessingStep, StreamRunner
from veille.deliver.engine import Engine, Job
from veille.deliver.settings import DeliverySettings
from veille.deliver.step import DeliverStep
from veille.deliver.tracker import Open311Tracker
from veille.kafka import Message, consumer_config, new_producer, producer_config, static_member_id
from veille.schemas.models import DeliveryReceipt
from veille.schemas.registry import resolver_from_settings
from veille.territory import Territory
from veille.topics import Topics

log = logging.getLogger("veille.deliver")


class Deliverer:
    def __init__(self, settings: Settings, territory: Territory, delivery: DeliverySettings | None = None,
                 *, extra_consumer_config: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.territory = territory
        self.delivery = delivery or DeliverySettings()
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}.deliver"
        self.producer = new_producer(producer_config(settings, **{
            "client.id": f"{settings.topic_prefix}-deliver"}))
        self.tracker = Open311Tracker(settings, territory, self.delivery, self.producer)
        self.engine = Engine(self.delivery, emit=self.emit, done=self._done,
                             response_base_url=self.delivery.response_base_url,
                             on_delivered=self.tracker.delivered)
        self.resolver = resolver_from_settings(settings)
        self.step: DeliverStep | None = None
        # Static membership, as the sink: a restarted deliverer takes its partitions back at once.
        config = {**consumer_config(settings, self.group_id),
                  "group.instance.id": static_member_id(settings, "deliver"),
                  "session.timeout.ms": int(settings.sink_session_seconds * 1000),
                  **(extra_consumer_config or {})}
        self.runner = StreamRunner(config, [self.topics.dispatch(a) for a in sorted(territory.agencies)],
                                   self._assemble, revoke_timeout=5.0, join_timeout=15.0)

    def _assemble(self, offsets: Offsets, _assignment: Assignment) -> ProcessingStep[Message]:
        self.step = DeliverStep(self.engine, self.territory, self.topics, offsets, self.emit,
                                self._flush, self.resolver)
        return self.step

    def emit(self, receipt: DeliveryReceipt) -> None:
        """Thread-safe (librdkafka's producer); delivery reports are served by ``_flush``."""
        self.producer.produce(self.topics.delivery, key=receipt.dispatch_id.bytes, value=receipt.encode())
        self.producer.poll(0)

    def _flush(self) -> None:
        left = self.producer.flush(30)
        if left:
            raise RuntimeError(f"{left} delivery receipts not acknowledged by Kafka: not committing")

    def _done(self, job: Job) -> None:
        step = self.step
        if step is not None:
            step.job_done(job)

    def stop(self) -> None:
        self.runner.stop()

    def run(self) -> None:
        self.engine.start()
        self.tracker.start(self.engine)
        try:
            self.runner.run()
        finally:
            self.tracker.stop()
            self.engine.stop()
            self.producer.flush(10)
