"""The router's per-message CPU cost on realistic batches, beside the codec's floor (issue 26).

``process_batch`` over batches of simulated incidents (each batch with its own dedup view,
committed afterwards, as ``BatchHandler`` does), timed in CPU seconds (``time.process_time``)
so that a machine shared with other work gives the same figure as a quiet one. Run alone::

    .venv/bin/python -m benchmarks.router_process [--n 20000] [--batch 500] [--profile]

``--profile`` prints the top of a cProfile of the same loop (its overhead inflates every
figure, the shares are what it is for).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from benchmarks.pure import as_in_a_component
from veille.kafka import Message
from veille.producers.simulator import Simulator, span_for
from veille.schemas import codec
from veille.schemas.models import Incident
from veille.streams.batch import process_batch
from veille.streams.dedup import DedupWindow
from veille.streams.router import Outcome, OutcomeKind, Router
from veille.territory import Territory, load_territory
from veille.topics import Topics


@dataclass(frozen=True)
class ProcessNumbers:
    process_us: float  # CPU µs per message, process_batch
    floor_us: float  # codec.decode + codec.encode of one incident, same run
    outputs: float  # outputs per message


def incidents(territory: Territory, n: int, seed: int = 1) -> list[Incident]:
    return Simulator(territory, seed=seed, start=datetime.now(UTC) - span_for(n),
                     dispatch_key=b"bench").incidents(n)


def messages_of(pool: Sequence[Incident], topics: Topics) -> list[Message]:
    return [Message(topics.intake(i.municipality), 0, n, str(i.id).encode(), i.encode())
            for n, i in enumerate(pool)]


def _cpu_us(func: object, items: Sequence[object]) -> float:
    assert callable(func)
    start = time.process_time()
    for item in items:
        func(item)
    return (time.process_time() - start) / len(items) * 1e6


def run_batches(router: Router, messages: Sequence[Message], batch: int) -> list[Outcome]:
    window = DedupWindow()
    outcomes_all: list[Outcome] = []
    for start in range(0, len(messages), batch):
        chunk = messages[start:start + batch]
        seen = window.batch()
        outcomes: list[Outcome] = []
        process_batch(router, chunk, seen, outcomes)
        seen.commit(lambda owner, done=outcomes: done[owner].kind != OutcomeKind.dead_letter)
        outcomes_all += outcomes
    return outcomes_all


def measure(territory: Territory, pool: Sequence[Incident], batch: int = 500,
            rounds: int = 3) -> ProcessNumbers:
    topics = Topics("bench")
    router = Router(territory, topics, pseudonym_key=b"bench", dispatch_key=b"bench")
    messages = messages_of(pool, topics)
    run_batches(router, messages[:1000], batch)  # warm: the routing plan, caches
    best = float("inf")
    outputs = 0.0
    with as_in_a_component():
        for _ in range(rounds):
            start = time.process_time()
            outcomes = run_batches(router, messages, batch)
            best = min(best, (time.process_time() - start) / len(messages) * 1e6)
            bad = [o for o in outcomes if o.kind != OutcomeKind.routed]
            if bad:
                raise RuntimeError(f"process_batch: {len(bad)} not routed, "
                                   f"e.g. {bad[0].kind} {bad[0].reason}")
            outputs = sum(len(o.outputs) for o in outcomes) / len(outcomes)
        values = [i.to_avro() for i in pool]
        floor = _cpu_us(codec.decode, [m.value for m in messages]) + \
            _cpu_us(lambda v: codec.encode("Incident", v), values)
    return ProcessNumbers(best, floor, outputs)


def profile(territory: Territory, pool: Sequence[Incident], batch: int = 500, top: int = 30) -> str:
    topics = Topics("bench")
    router = Router(territory, topics, pseudonym_key=b"bench", dispatch_key=b"bench")
    messages = messages_of(pool, topics)
    run_batches(router, messages[:1000], batch)
    prof = cProfile.Profile()
    prof.enable()
    run_batches(router, messages, batch)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="the best of this many passes is printed")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    territory = load_territory()
    pool = incidents(territory, args.n)
    if args.profile:
        print(profile(territory, pool, args.batch))
        return 0
    m = measure(territory, pool, args.batch, args.rounds)
    print(f"process_batch        {m.process_us:7.1f} CPU µs/message  ({m.outputs:.1f} outputs/message, "
          f"batches of {args.batch}, {len(pool):,} incidents)")
    print(f"codec floor          {m.floor_us:7.1f} CPU µs  (decode + encode of one incident)")
    print(f"ratio                {m.process_us / m.floor_us:7.1f} x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
