"""The framework's ceiling: a faust agent that only moves bytes, with the router's settings.

Same driver, same batches (``noack_take``), same producer (idempotent, acks=all, flushed per
batch, acked after delivery) as ``veille router run``: whatever the router does beyond this
is the cost of routing. ``python -m benchmarks.bare_agent`` (environment as for the router).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, cast

import faust
from faust.types import StreamT

from veille.config import get_settings
from veille.kafka import Output
from veille.runtime import tune_gc
from veille.streams.app import BATCH_MAX, BATCH_WITHIN, _credentials
from veille.streams.output import OutputSender
from veille.streams.transport import broker_url
from veille.territory import load_territory
from veille.topics import Topics


def create_app() -> faust.App:
    settings = get_settings()
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    app = faust.App(
        f"{settings.topic_prefix}-bare", broker=broker_url(settings.kafka_bootstrap()),
        broker_credentials=_credentials(settings), datadir=str(settings.state_dir / "bare"),
        store="memory://", key_serializer="raw", value_serializer="raw", producer_acks=-1,
        consumer_auto_offset_reset="earliest", web_enabled=False, broker_commit_interval=1.0,
    )
    sources = app.topic(*[topics.intake(m) for m in sorted(territory.municipalities)],
                        key_type=bytes, value_type=bytes)
    sender = OutputSender(settings)
    target = f"{settings.topic_prefix}.bare"

    @app.agent(sources, name="forward")
    async def forward(stream_t: StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], stream_t)
        loop = asyncio.get_running_loop()
        async for events in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN):
            batch = [(i, Output(target, e.message.key, e.message.value)) for i, e in enumerate(events)]
            result = await loop.run_in_executor(None, sender.send, batch)
            if not result.ok:
                raise RuntimeError(f"bare agent: delivery failed {result}")
            for event in events:
                await stream.ack(event)

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "bare.json").write_text(json.dumps({"pid": os.getpid(), "at": time.time()}))
    return app


def main() -> int:
    worker = faust.Worker(create_app(), loglevel="warn", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    tune_gc()  # as `veille router run` does
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
