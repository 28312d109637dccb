"""What Python itself can move: a plain confluent-kafka consume → produce loop over the router's
intake topics, with the router's delivery guarantee (idempotent producer, acks=all, every
batch's outputs confirmed before its offsets are committed) and nothing else: no framework,
no decoding. The router's drain is reported as a share of this one (benchmarks/drain.py).

``python -m benchmarks.plain_loop`` (environment as for the router); consumer group
``<prefix>-plain``, output topic ``<prefix>.bare``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType

from veille.config import get_settings
from veille.kafka import new_producer, producer_config
from veille.territory import load_territory
from veille.topics import Topics

BATCH = 1000


def main() -> int:
    from confluent_kafka import Consumer

    from veille.kafka import consumer_config

    settings = get_settings()
    topics = Topics(settings.topic_prefix)
    sources = [topics.intake(m) for m in sorted(load_territory(settings.territory_dir).municipalities)]
    consumer = Consumer(consumer_config(settings, f"{settings.topic_prefix}-plain"))
    # The router's producer settings (streams/output.py): idempotent, acks=all, zstd, linger 5 ms.
    producer = new_producer(producer_config(settings, **{"linger.ms": 5, "compression.type": "zstd"}))
    target = f"{settings.topic_prefix}.bare"
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer.subscribe(sources)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "plain.json").write_text(json.dumps({"pid": os.getpid(), "at": time.time()}))
    try:
        while not stopping:
            messages = consumer.consume(BATCH, timeout=0.5)
            records = [m for m in messages if m.error() is None]
            if not records:
                continue
            for m in records:
                while True:
                    try:
                        producer.produce(target, key=m.key(), value=m.value())
                        break
                    except BufferError:
                        producer.poll(0.01)
            if producer.flush(30):
                raise RuntimeError("plain loop: outputs not acknowledged")
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
