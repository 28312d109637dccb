"""The pure parts, without a broker: codec, routing decisions, the router's per-message work."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from benchmarks.bench_produce import per_call_us
from veille.kafka import Message
from veille.runtime import tune_gc
from veille.schemas import codec
from veille.schemas.models import Channel, GeoPoint, Incident, IncidentCategory, Severity
from veille.streams.dedup import DedupWindow
from veille.streams.router import OutcomeKind, Router
from veille.territory import Territory, load_territory
from veille.territory.routing import route_incident
from veille.topics import Topics


@contextmanager
def as_in_a_component() -> Iterator[None]:
    """The garbage collector tuned as the router, sink and intake tune it at start
    (``veille.runtime.tune_gc``), then put back: measured in process as they run."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@dataclass(frozen=True)
class CodecNumbers:
    encode_us: float  # codec.encode of the Avro dict
    decode_us: float  # codec.decode to the Avro dict
    model_encode_us: float  # Incident.encode: to_avro + encode (what the SDK pays)
    model_decode_us: float  # Incident.decode: decode + pydantic validation (what consumers pay)
    payload_bytes: float


def codec_costs(incidents: Sequence[Incident]) -> CodecNumbers:
    values = [i.to_avro() for i in incidents]
    payloads = [codec.encode("Incident", v) for v in values]
    return CodecNumbers(
        encode_us=per_call_us(lambda v: codec.encode("Incident", v), values),
        decode_us=per_call_us(codec.decode, payloads),
        model_encode_us=per_call_us(Incident.encode, list(incidents)),
        model_decode_us=per_call_us(Incident.decode, payloads),
        payload_bytes=sum(map(len, payloads)) / len(payloads),
    )


def router_process_rate(incidents: Sequence[Incident], territory: Territory,
                        prefix: str = "bench") -> tuple[float, float]:
    """(messages/s, outputs per message) of ``Router.process`` alone (decode, check, dedupe,
    route, encode every output): the faust router's ceiling if moving bytes cost nothing."""
    topics = Topics(prefix)
    router = Router(territory, topics, pseudonym_key=b"bench", dispatch_key=b"bench")
    messages = [Message(topics.intake(i.municipality), 0, n, str(i.id).encode(), i.encode())
                for n, i in enumerate(incidents)]
    seen = DedupWindow().batch()
    outputs = 0
    with as_in_a_component():
        start = time.perf_counter()
        for msg in messages:
            outcome = router.process(msg, seen)
            if outcome.kind != OutcomeKind.routed:
                raise RuntimeError(f"router.process: {outcome.kind} {outcome.reason}")
            outputs += len(outcome.outputs)
        elapsed = time.perf_counter() - start
    return len(messages) / elapsed, outputs / len(messages)


def benchmark_routing(n: int = 200_000, territory: Territory | None = None, seed: int = 0) -> float:
    """Incident routing decisions per second on points spread over the territory."""
    t = territory or load_territory()
    rng = random.Random(seed)
    minx, miny, maxx, maxy = t.geometry.bounds
    codes = sorted(t.municipalities)
    now = datetime.now(UTC) - timedelta(minutes=1)
    pool = []
    for i in range(min(n, 5000)):
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        where = t.locate(lon, lat)
        pool.append(Incident(
            id=UUID(int=i + 1), municipality=where[0] if where else rng.choice(codes),
            category=rng.choice(list(IncidentCategory)), severity=rng.choice(list(Severity)),
            location=GeoPoint(lat=lat, lon=lon), occurred_at=now, reported_at=now,
            channel=Channel.app))
    route_incident(pool[0], t)  # build the plan outside the measurement
    start = time.perf_counter()
    for i in range(n):
        route_incident(pool[i % len(pool)], t)
    return n / (time.perf_counter() - start)
