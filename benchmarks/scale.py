"""``python -m benchmarks.scale`` (``make scale``): how the hub's cost grows with the territory.

For synthetic territories of 6, 350 and 35,000 municipalities (benchmarks/territory_gen.py),
each measured in a fresh subprocess (a time limit per size: a step that does not finish says
where this machine stops):

* load: parsing and resolving the files (``read_territory``), then the coverage checks
  (``validate_territory``, what ``veille territory check`` and a strict start run);
* the router's start: the routing plan and ``Router`` built, resident memory after it;
* routing decisions per second on points spread over the territory (the pure function);
* the topics and ACLs the hub would create for it (counted from their plans);
* with ``--broker`` (default on): a local KRaft broker, the intake topics created in batches
  of 200 (one partition each, as a router's intake topic would be at this size), then the time
  a client takes to read the whole cluster's metadata (what every client does at start). Capped
  by ``--max-topics`` (default 5,000); the numbers beyond that are the plans' counts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (6, 350, 35_000)
STEP_LIMIT_S = 900


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _step(size: int, what: str, seconds: float) -> None:
    # On stderr as it goes: a size that runs out of time still says which step it reached.
    print(f"scale: {size}: {what} in {seconds:.2f} s", file=sys.stderr, flush=True)


def measure_one(size: int, work: Path, broker: bool, max_topics: int) -> dict[str, Any]:
    """Everything for one size, in this process (run by :func:`main` in a subprocess)."""
    from benchmarks.pure import benchmark_routing
    from benchmarks.territory_gen import generate
    from veille.security import acl_plan
    from veille.streams.router import Router
    from veille.territory.checks import validate_territory
    from veille.territory.files import read_territory
    from veille.topics import Topics

    out: dict[str, Any] = {"size": size}
    directory = work / f"territory-{size}"
    t0 = time.perf_counter()
    out.update(generate(directory, size))
    out["generate_s"] = time.perf_counter() - t0
    _step(size, "generated", out["generate_s"])
    base = _rss_mb()
    t0 = time.perf_counter()
    territory = read_territory(directory)
    out["read_s"] = time.perf_counter() - t0
    _step(size, "files read and resolved", out["read_s"])
    out["rss_territory_mb"] = _rss_mb() - base
    t0 = time.perf_counter()
    errors = [i for i in validate_territory(territory) if i.level == "error"]
    out["check_s"] = time.perf_counter() - t0
    _step(size, "checked", out["check_s"])
    out["check_errors"] = len(errors)
    t0 = time.perf_counter()
    router = Router(territory, Topics("scale"), pseudonym_key=b"k" * 32, dispatch_key=b"d" * 32)
    out["router_build_s"] = time.perf_counter() - t0
    _step(size, "router built", out["router_build_s"])
    gc.collect()
    t0 = time.perf_counter()
    out["routing_per_s"] = benchmark_routing(20_000, territory)
    out["first_plan_and_routing_s"] = time.perf_counter() - t0
    _step(size, "routing plan built and 20,000 decisions made", out["first_plan_and_routing_s"])
    out["rss_router_mb"] = _rss_mb()
    del router
    topics = Topics("veille")
    out["intake_topics"] = len(territory.municipalities)
    out["dispatch_topics"] = len(territory.agencies)
    out["acls"] = len(acl_plan("veille", territory.municipalities, territory.agencies))
    out["principals"] = len(territory.municipalities) + len(territory.agencies)
    del topics
    if broker:
        out.update(_broker_part(sorted(territory.municipalities), work / f"state-{size}", max_topics))
    return out


def _broker_part(codes: list[str], state_dir: Path, max_topics: int) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient, NewTopic

    from veille.config import Settings
    from veille.local.broker import LocalBroker

    settings = Settings(state_dir=state_dir, bootstrap_servers="")
    broker = LocalBroker(settings)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    info = broker.start(die_with_parent=True)
    out["broker_start_s"] = time.perf_counter() - t0
    # The local broker runs SASL/SCRAM with ACLs: the admin client logs in as its superuser.
    client = settings.model_copy(update={"bootstrap_servers": info.bootstrap}).kafka_client_config()
    try:
        admin = AdminClient(client)
        names = [f"veille.intake.{c}" for c in codes][:max_topics]
        t0 = time.perf_counter()
        for start in range(0, len(names), 200):
            futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1)
                                           for n in names[start:start + 200]], request_timeout=300)
            for future in futures.values():
                future.result(timeout=300)
        out["topics_created"] = len(names)
        out["topics_create_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metadata = AdminClient(client).list_topics(timeout=120)
        out["metadata_s"] = time.perf_counter() - t0
        out["metadata_topics"] = len(metadata.topics)
    finally:
        broker.stop()
    return out


def _row(r: dict[str, Any]) -> str:
    def g(key: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(r[key]) if key in r else "—"

    return (f"{r['size']:>7} | {g('agencies', '{:d}'):>7} | {g('read_s'):>7} | {g('check_s'):>8} | "
            f"{g('router_build_s'):>6} | {g('rss_router_mb', '{:.0f}'):>6} | "
            f"{g('routing_per_s', '{:,.0f}'):>9} | "
            f"{g('intake_topics', '{:d}'):>6} | {g('acls', '{:,d}'):>8} | {g('topics_created', '{:d}'):>6} | "
            f"{g('topics_create_s', '{:.1f}'):>7} | {g('metadata_s'):>6}")


HEADER = ("   size | bodies  | load s  | check s  | router | RSS MB | routing/s | intake | ACLs     | "
          "made   | create s | meta s\n" + "-" * 118)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--no-broker", action="store_true")
    parser.add_argument("--max-topics", type=int, default=5000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.work, not args.no_broker, args.max_topics)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="veille-scale-") as work:
        for size in args.sizes:
            cmd = [sys.executable, "-m", "benchmarks.scale", "--one", str(size), "--work", work,
                   "--max-topics", str(args.max_topics), *(["--no-broker"] if args.no_broker else [])]
            print(f"scale: {size} municipalities…", file=sys.stderr, flush=True)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
            try:
                stdout, _ = proc.communicate(timeout=STEP_LIMIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its handle
                proc.communicate()
                print(f"scale: {size} municipalities did not finish in {STEP_LIMIT_S} s: "
                      "this machine stops here", flush=True)
                continue
            if proc.returncode != 0:
                print(f"scale: {size} municipalities failed (exit {proc.returncode})", flush=True)
                continue
            rows.append(json.loads(stdout.strip().splitlines()[-1]))
    print(HEADER)
    for r in rows:
        print(_row(r))
    print("\nload: parse + resolve the files; check: veille territory check's coverage checks; router: "
          "Router built (s); RSS after routing; made/create/meta: intake topics created on the local "
          "broker, seconds to create them, seconds for a client to read the cluster's metadata.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
