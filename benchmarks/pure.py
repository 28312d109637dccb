"""The pure parts, without a broker: codec, routing decisions, the router's per-message work."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.bench_produce import per_call_us
from veille.schemas import codec
from veille.schemas.models import Incident
from veille.streams.router import Message, Router
from veille.territory import Territory
from veille.topics import Topics


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
    seen: dict[str, Any] = {}
    outputs = 0
    start = time.perf_counter()
    for msg in messages:
        outcome = router.process(msg, seen)
        if outcome.kind != "routed":
            raise RuntimeError(f"router.process: {outcome.kind} {outcome.reason}")
        outputs += len(outcome.outputs)
    return len(messages) / (time.perf_counter() - start), outputs / len(messages)
