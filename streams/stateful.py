"""What the hub's stateful faust workers share: the escalation worker (``streams/escalation.py``),
the grouping worker (``streams/grouping.py``) and the PCS chain (``streams/pcs.py``).

Each is a faust app of its own (its consumer group, its tables and their changelogs, its process),
so that a table recovery that stalls can delay its follow-ups but never the routing of new events
(``streams/app.py``). They connect, commit and join exactly like the router: raw bytes in and out,
outputs acknowledged by every in-sync replica, offsets committed each second, static membership.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import faust

from veille.config import Settings
from veille.kafka import Output, static_member_id
from veille.schemas.catalog import catalog
from veille.schemas.registry import output_resolver
from veille.streams.app import app_settings
from veille.streams.membership import faust_consumer_settings
from veille.streams.output import OutputSender
from veille.streams.router import Router
from veille.streams.transport import broker_url
from veille.territory import Territory
from veille.topics import Topics


def stateful_app(settings: Settings, name: str, store: str) -> faust.App:
    """The faust app ``<prefix>-<name>``, its tables in ``store`` under ``<state dir>/<name>``."""
    member = {**faust_consumer_settings(settings),
              "consumer_group_instance_id": static_member_id(settings, name)}
    return faust.App(
        f"{settings.topic_prefix}-{name}",
        broker=broker_url(settings.kafka_bootstrap()),
        **app_settings(settings, name, store),
        **member,
    )


def output_router(settings: Settings, territory: Territory, topics: Topics, routed_record: str) -> Router:
    """A router used only to write outputs the router's way (single-object or Confluent framing).
    With a registry, the dispatches' and ``routed_record``'s schema ids are resolved now: a worker
    fails at start, not mid-stream, when they are not registered."""
    framer = output_resolver(settings)
    router = Router(territory, topics, pseudonym_key=b"", dispatch_key=b"", output_resolver=framer)
    if framer is not None:
        for agency in sorted(territory.agencies):
            framer.id_for(topics.dispatch(agency), catalog().latest("Dispatch"))
        framer.id_for(topics.routed, catalog().latest(routed_record))
    return router


EXIT_OUTPUT_FAILED = 5
SEND_ATTEMPTS = 5


async def publish_or_exit(sender: OutputSender, outputs: Sequence[Output], log: logging.Logger) -> None:
    """Every output acknowledged by Kafka, or the process stops: its supervisor restarts it and
    nothing past the record that made them is committed, so they are made again."""
    loop = asyncio.get_running_loop()
    for attempt in range(SEND_ATTEMPTS):
        confirmation = await loop.run_in_executor(None, sender.send, list(enumerate(outputs)))
        if confirmation.ok:
            return
        log.warning("outputs refused (attempt %d): %s %s", attempt + 1, confirmation.permanent,
                    confirmation.transient[:3])
        await asyncio.sleep(min(2 ** attempt, 10))
    log.critical("stopping: outputs could not be published")
    os._exit(EXIT_OUTPUT_FAILED)
