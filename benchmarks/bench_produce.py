"""Producer throughput and codec cost (a script, not a test).

    veille broker start
    python benchmarks/bench_produce.py [--n 100000] [--compression lz4,zstd,none]

Prints: codec encode/decode µs per incident (codec alone, and pydantic validation), then
for each compression codec the acknowledged events/s of ``Publisher.publish_many`` on the
local broker and the bytes sent to the broker per event (librdkafka statistics).
Topics go under a throw-away prefix ``bench<hex>`` (delete them or the broker's state dir).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient

from benchmarks.kafka_rates import sdk_publish
from veille.config import get_settings
from veille.producers.simulator import Simulator, span_for
from veille.schemas import codec
from veille.schemas.models import Incident
from veille.territory import load_territory
from veille.topics import ensure_topics, topic_specs


def per_call_us(func: Any, items: list[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        func(item)
    return (time.perf_counter() - start) / len(items) * 1e6


def bench_codec(incidents: list[Incident]) -> None:
    values = [i.to_avro() for i in incidents]
    payloads = [codec.encode("Incident", v) for v in values]
    dicts = [i.model_dump(mode="json") for i in incidents]
    size = sum(map(len, payloads)) / len(payloads)
    print(f"codec.encode        {per_call_us(lambda v: codec.encode('Incident', v), values):7.1f} µs/event "
          f"({size:.0f} bytes/event)")
    print(f"codec.decode        {per_call_us(codec.decode, payloads):7.1f} µs/event")
    print(f"Incident.decode     {per_call_us(Incident.decode, payloads):7.1f} µs/event (decode + validation)")
    print(f"validate JSON dict  {per_call_us(Incident.model_validate, dicts):7.1f} µs/event")
    print(f"Incident.encode     {per_call_us(Incident.encode, incidents):7.1f} µs/event (to_avro + encode)")


def bench_publish(incidents: list[Incident], compression: str, as_dicts: bool) -> None:
    settings = get_settings().model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}"})
    municipalities = sorted({i.municipality for i in incidents})
    ensure_topics(AdminClient(settings.kafka_client_config()), topic_specs(settings, municipalities, []))
    stats: list[dict[str, Any]] = []
    records: list[Any] = [i.model_dump(mode="json") for i in incidents] if as_dicts else incidents
    rate = sdk_publish(settings, records, compression=compression, extra_config={
        "statistics.interval.ms": 1000, "stats_cb": lambda raw: stats.append(json.loads(raw))})
    txbytes = sum(b["txbytes"] for b in stats[-1]["brokers"].values()) if stats else 0
    label = "dicts (validated)" if as_dicts else "models"
    print(f"publish {compression:5s} {label:18s} {rate.per_second:9.0f} events/s acknowledged "
          f"({rate.count} in {rate.seconds:.2f} s, {txbytes / len(records):.0f} bytes/event on the wire)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="incidents per run (default 100000)")
    parser.add_argument("--compression", default="lz4,zstd", help="comma-separated codecs (default lz4,zstd)")
    parser.add_argument("--dicts", action="store_true", help="also publish dicts (pydantic validation on)")
    args = parser.parse_args()
    settings = get_settings()
    territory = load_territory(settings.territory_dir)
    t0 = time.perf_counter()
    incidents = Simulator(territory, seed=1, start=datetime.now(UTC) - span_for(args.n)).incidents(args.n)
    print(f"{args.n} simulated incidents in {time.perf_counter() - t0:.1f} s")
    bench_codec(incidents[:20_000])
    for compression in args.compression.split(","):
        bench_publish(incidents, compression, as_dicts=False)
        if args.dicts:
            bench_publish(incidents, compression, as_dicts=True)


if __name__ == "__main__":
    main()
