"""The router as a faust-streaming app: its topics and its one agent.

Guarantee (dispatches and routing records): at-least-once. Each stream event is a batch
of fetched records (streams/batch_transport.py; ``router_record_batches=false``: one event
per record, taken in batches with ``noack_take``); ``BatchHandler`` (``streams/batch.py``)
sends the outputs of a batch and *awaits* them (Kafka acknowledged them, acks=all) before
any event of the batch is acked, so faust can only commit offsets of events whose outputs
are durable. A crash in between re-delivers the batch: dispatch ids are deterministic
(keyed hash of event, agency, service) for agencies to deduplicate on, and the store
deduplicates incidents by id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.types import StreamT

from veille.config import Settings
from veille.kafka import Message
from veille.schemas.catalog import catalog
from veille.schemas.registry import output_resolver, resolver_from_settings
from veille.streams import batch_transport, metrics, transport
from veille.streams.agent import RouteLoop, record_batches
from veille.streams.attempts import AttemptLog
from veille.streams.batch import BatchFailed, BatchHandler
from veille.streams.dedup import DedupWindow
from veille.streams.membership import faust_consumer_settings
from veille.streams.output import OutputSender
from veille.streams.quarantine import SourceGuard
from veille.streams.router import Router
from veille.territory import load_territory
from veille.topics import Topics

log = logging.getLogger("veille.router")

BATCH_MAX = 1000
BATCH_WITHIN = 0.05  # seconds: bounds the latency a quiet stream adds


def create_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    app = faust.App(
        f"{settings.topic_prefix}-router",
        broker=(batch_transport if settings.router_record_batches else transport).broker_url(
            settings.kafka_bootstrap()),
        **app_settings(settings, "router", "memory://"),
        # Events queued for the agent: with record batches each holds up to 500 records, so
        # faust's default (4096 events) would let a backlog fill memory with 2M records.
        **({"stream_buffer_maxsize": batch_transport.STREAM_BUFFER_BATCHES}
           if settings.router_record_batches else {}),
        # Static membership + a short session: see streams/membership.py.
        **faust_consumer_settings(settings),
    )

    # The watchdog must not count a join or a rebalance as a stall: it learns here which
    # partitions this worker holds, and an assignment counts as progress.
    def _revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        metrics.PROGRESS.revoked()

    def _assigned(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        assigned = args[0]
        metrics.PROGRESS.assigned_to({(tp.topic, tp.partition) for tp in assigned})
        log.info("assigned %d partitions", len(assigned))

    app.on_partitions_revoked.connect(_revoked)
    app.on_partitions_assigned.connect(_assigned)

    sources = app.topic(
        *[topics.intake(m) for m in sorted(territory.municipalities)],
        topics.alerts, topics.status, key_type=bytes, value_type=bytes,
    )
    # The de-duplication window lives in process memory (streams/dedup.py): a faust Table was
    # tried and removed, routers restarted mid-stream then intermittently never resumed (its
    # recovery stalled with a backlog, seen in CI).
    framer = output_resolver(settings)
    router = Router(territory, topics, pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
                    dispatch_key=settings.dispatch_key.get_secret_value().encode(),
                    resolver=resolver_from_settings(settings), output_resolver=framer,
                    grouping=settings.grouping)
    if framer is not None:
        # Fail at start, not mid-stream, when the outputs' schemas are not registered; after
        # this, writing never needs the registry (ids cached for the life of the process).
        for topic, record_type in router.output_schemas():
            framer.id_for(topic, catalog().latest(record_type))
    handler = BatchHandler(router, OutputSender(settings), DedupWindow(),
                           AttemptLog(settings.state_dir / "router" / "attempts.json"), SourceGuard())

    def stop(code: int, what: str, exc: BaseException) -> None:
        log.critical("stopping the router: %s (%s)", what, exc, exc_info=not isinstance(exc, BatchFailed))
        os._exit(code)

    @app.agent(sources, name="route")
    async def route(stream_t: StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], stream_t)  # noack_take lives on the concrete class

        async def ack(events: Sequence[Any]) -> None:
            for event in events:
                await stream.ack(event)

        loop = RouteLoop(handler, ack, stop)
        if settings.router_record_batches:
            async for events, messages in record_batches(stream, BATCH_MAX, BATCH_WITHIN):
                await loop.take(events, messages)
            return
        async for events in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN):
            m = [e.message for e in events]
            await loop.take(events, [Message(x.topic, x.partition, x.offset, x.key, x.value) for x in m])

    return app


def router_source_topics(settings: Settings) -> list[str]:
    """The topics the router consumes (for its stall watchdog)."""
    topics = Topics(settings.topic_prefix)
    municipalities = sorted(load_territory(settings.territory_dir).municipalities)
    return [*(topics.intake(m) for m in municipalities), topics.alerts, topics.status]


def app_settings(settings: Settings, name: str, store: str) -> dict[str, Any]:
    """What every faust app of the hub sets alike (the router, the stateful workers): its
    credentials, raw bytes in and out, acks from every replica, and its state under
    ``<state dir>/<name>`` in ``store``."""
    return {
        "broker_credentials": _credentials(settings),
        "datadir": str(settings.state_dir / name),
        "store": store,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,  # /metrics is served by prometheus-client (see cli)
        "broker_commit_interval": 1.0,
    }


def _credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    # Same resolution as the confluent-kafka clients (Settings.kafka_credentials).
    creds = settings.kafka_credentials()
    tls = None
    if creds.protocol in ("SSL", "SASL_SSL"):
        import ssl

        tls = ssl.create_default_context(cafile=settings.ssl_ca_location or None)
    if not creds.mechanism:
        return faust.SSLCredentials(tls) if tls is not None else None
    return faust.SASLCredentials(
        username=creds.username, password=creds.password, mechanism=creds.mechanism, ssl_context=tls,
    )
