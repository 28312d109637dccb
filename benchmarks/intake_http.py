"""``python -m benchmarks.intake_http``: the HTTP intake under a flood, measured from outside.

A local broker, ``veille intake serve`` as a subprocess (as in production: one app key with
its quota raised), and by default the router and the sink running beside it on the same
cores. ``--clients`` concurrent aiohttp clients POST Open311 requests (form-encoded), then the
JSON API's incidents, a fixed number each; every 201/202 is an acknowledged report
(acks=all). Reported: accepted/s, p50/p90/p99, errors; then the same clients against a bare
aiohttp app that only answers 201 (the framework's ceiling on this machine); then every
accepted report is counted on the intake topics by id (its Kafka key): each must be there
exactly once.

Also run by ``make bench`` as its own section (``benchmarks/__main__.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from confluent_kafka import Consumer

from benchmarks.pipeline import Child, cpu_seconds, hub_env, scrape, total
from benchmarks.results import Report, Target, say
from veille.config import Settings
from veille.local.broker import LocalBroker
from veille.producers.intake_keys import KEYS_FILE, KeyStore
from veille.producers.open311_catalog import service_codes
from veille.producers.simulator import Simulator, span_for
from veille.territory import Territory, load_territory
from veille.topics import Topics

RATE_TARGET = Target(">=", 1_000)  # accepted reports/s through Open311
P99_TARGET = Target("<=", 250)  # ms


@dataclass
class Run:
    """One load phase: every request's latency and answer."""

    name: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    accepted_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return len(self.accepted_ids)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- requests


def open311_forms(territory: Territory, n: int, token: str) -> list[dict[str, str]]:
    """``n`` Open311 requests of simulated incidents (points inside the territory)."""
    codes = {c.value for c in service_codes(territory)}
    out: list[dict[str, str]] = []
    sim = Simulator(territory, seed=7, start=datetime.now(UTC) - span_for(2 * n))
    for inc in sim.incidents(n * 2):
        if inc.category.value not in codes or inc.location is None:
            continue
        out.append({"api_key": token, "service_code": inc.category.value, "lat": f"{inc.location.lat:.6f}",
                    "long": f"{inc.location.lon:.6f}", "description": inc.description[:200] or "x",
                    "email": "resident@example.org", "first_name": "Camille"})
        if len(out) == n:
            break
    return out


def api_bodies(territory: Territory, n: int) -> list[bytes]:
    """``n`` JSON API incidents (no id: the intake fills id, reported_at and channel)."""
    sim = Simulator(territory, seed=8, start=datetime.now(UTC) - span_for(n))
    out = []
    for inc in sim.incidents(n):
        data = json.loads(inc.model_dump_json(exclude={"id", "reported_at", "channel"}))
        out.append(json.dumps(data).encode())
    return out


async def _load(url: str, clients: int, bodies: Sequence[dict[str, str] | bytes], headers: dict[str, str],
                run: Run, id_of: str) -> None:
    next_index = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < len(bodies):
            body = bodies[next_index]
            next_index += 1
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    text = await resp.read()
                    run.latencies_ms.append((time.perf_counter() - start) * 1e3)
                    run.statuses[resp.status] += 1
                    if resp.status in (201, 202):
                        answer = json.loads(text) if text else {}
                        if id_of == "open311":
                            run.accepted_ids.append(answer[0]["service_request_id"])
                        elif id_of == "api":
                            run.accepted_ids.append(answer["id"])
                        else:
                            run.accepted_ids.append("-")
                    elif len(run.errors) < 5:
                        run.errors[f"{resp.status} {text[:160]!r}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                run.errors[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        run.seconds = time.perf_counter() - start


def load(url: str, clients: int, bodies: Sequence[dict[str, str] | bytes], run: Run, id_of: str,
         headers: dict[str, str] | None = None, pids: dict[str, int] | None = None) -> Run:
    before = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    asyncio.run(_load(url, clients, bodies, headers or {}, run, id_of))
    run.cpu = {name: cpu_seconds(pid) - before[name] for name, pid in (pids or {}).items()}
    return run


# --------------------------------------------------------------------------- the bare server


def bare_server(port: int) -> None:
    """An aiohttp app that reads the body and answers 201 with a small JSON: the ceiling."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response([{"service_request_id": "-", "service_notice": "ok"}], status=201)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    app.router.add_get("/healthz", lambda r: answer(r))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda *a: None)


def _wait_http(url: str, child: Child, timeout: float = 90) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited {child.proc.returncode}:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    raise TimeoutError(f"{child.name} not ready:\n{child.tail()}")


# --------------------------------------------------------------------------- check


def count_on_topics(settings: Settings, topics: list[str], expected: int,
                    timeout: float = 60) -> Counter[str]:
    """Keys (event ids) of every record on ``topics``, read from the start."""
    group = f"bench-intake-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    keys: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(5000, timeout=0.5)
            got = [m for m in msgs if m.error() is None]
            for m in got:
                keys[(m.key() or b"").decode()] += 1
            if got:
                quiet_since = time.monotonic()
            elif sum(keys.values()) >= expected and time.monotonic() - quiet_since > 2:
                break
    finally:
        consumer.close()
    return keys


# --------------------------------------------------------------------------- the benchmark


def _profile(pid: int, out: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy (when installed) sampling ``pid`` into ``out/<name>.txt`` (collapsed stacks, idle
    included: a wait shows as much as a computation)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if out is None or not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--gil", "--threads",
                             "--rate", "200", "--output", str(out / f"{name}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def bench_intake(report: Report, settings: Settings, territory: Territory, *, requests: int, clients: int,
                 with_hub: bool, logs: Path, section: str = "9", profile: Path | None = None) -> None:
    """The measured phases, on a running broker (``settings.bootstrap_servers``), on topics of
    their own prefix (the broker's credentials stay in ``settings.state_dir``)."""
    settings = settings.model_copy(update={"topic_prefix": f"intake{uuid.uuid4().hex[:8]}"})
    logs.mkdir(parents=True, exist_ok=True)
    key_store = KeyStore(settings.state_dir / KEYS_FILE)
    _, token = key_store.issue("bench-flood", municipalities=sorted(territory.municipalities))
    env = hub_env(settings)
    env.update({"VEILLE_INTAKE_RATE_PER_SECOND": "1000000", "VEILLE_INTAKE_BURST": "1000000"})
    port, bare_port = _free_port(), _free_port()
    children: list[Child] = []
    forms = open311_forms(territory, requests, token)
    bodies = api_bodies(territory, requests)
    try:
        intake = Child("intake", ["intake", "serve", "--port", str(port)], env, logs)
        children.append(intake)
        pids = {"intake": intake.pid}
        if with_hub:
            router = Child("router", ["router", "run", "--metrics-port", "0"], env, logs)
            sink = Child("sink", ["sink", "run", "--port", "0"], env, logs)
            children += [router, sink]
            pids.update(router=router.pid, sink=sink.pid)
            router.wait_info(settings.state_dir / "router.json")
            sink.wait_info(settings.state_dir / "sink.json")
        _wait_http(f"http://127.0.0.1:{port}/healthz", intake)
        base = f"http://127.0.0.1:{port}"
        warm = load(f"{base}/open311/v2/requests.json", 8, forms[:200], Run("warm"), "open311")
        say(f"warm-up: {warm.accepted} accepted, statuses {dict(warm.statuses)} {dict(warm.errors)}")
        say(f"Open311: {len(forms):,} requests, {clients} clients (load average {os.getloadavg()[0]:.1f})")
        spy = _profile(intake.pid, profile, "open311")
        o311 = load(f"{base}/open311/v2/requests.json", clients, forms, Run("open311"), "open311", pids=pids)
        _stop_profile(spy)
        delivery = scrape(f"{base}/metrics")
        say(f"JSON API: {len(bodies):,} incidents from {clients} clients")
        api = load(f"{base}/v1/incidents", clients, bodies, Run("api"), "api",
                   {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, pids=pids)
        bare = Child("bare", ["--bare-server", str(bare_port)], env, logs, module="benchmarks.intake_http")
        children.append(bare)
        _wait_http(f"http://127.0.0.1:{bare_port}/healthz", bare)
        say("bare aiohttp app (answers 201, nothing else): the same Open311 requests")
        ceiling = load(f"http://127.0.0.1:{bare_port}/open311/v2/requests.json", clients, forms, Run("bare"),
                       "bare", pids={"bare": bare.pid})
    finally:
        for child in children:
            child.stop()
    topics = Topics(settings.topic_prefix)
    accepted = o311.accepted_ids + warm.accepted_ids + api.accepted_ids
    intake_topics = [topics.intake(m) for m in sorted(territory.municipalities)]
    keys = count_on_topics(settings, intake_topics, len(accepted))
    missing = sum(1 for i in accepted if keys[i] == 0)
    doubled = sum(1 for i in accepted if keys[i] > 1)
    _report(report, section, clients, with_hub, o311, api, ceiling, len(accepted), missing, doubled)
    acked = total(delivery, "veille_producer_delivery_seconds_count", record_type="Incident")
    if acked:
        seconds = total(delivery, "veille_producer_delivery_seconds_sum", record_type="Incident")
        report.definitions.append(
            f"intake /metrics after the Open311 phase: produce -> delivery report served "
            f"{seconds / acked * 1e3:,.1f} ms on average over {acked:,.0f} incidents")


def _cpu(run: Run) -> str:
    """Each process's CPU share and CPU per accepted request during ``run``."""
    if not run.seconds:
        return ""
    n = max(run.accepted, 1)
    return ", ".join(f"{k} {v / run.seconds:.0%} of a core ({v / n * 1e6:,.0f} µs per request)"
                     for k, v in run.cpu.items())


def _report(report: Report, section: str, clients: int, with_hub: bool, o311: Run, api: Run, bare: Run,
            accepted: int, missing: int, doubled: int) -> None:
    beside = "router, sink and broker on the same cores" if with_hub else "broker only"
    sec = f"{section}. HTTP intake, {clients} concurrent clients ({beside})"
    for run, label in ((o311, "Open311 POST requests"), (api, "JSON API POST /v1/incidents")):
        cpu = _cpu(run)
        others = {s: n for s, n in run.statuses.items() if s not in (201, 202)}
        report.add(sec, f"{label}: accepted/s", run.rate, "req/s", RATE_TARGET if run is o311 else None,
                   f"{run.accepted:,} accepted in {run.seconds:.1f}s; other answers {others or 'none'}; "
                   f"errors {dict(run.errors) or 'none'}; CPU: {cpu}")
        report.add(sec, f"{label}: p50", run.quantile(0.5), "ms", note=f"p90 {run.quantile(0.9):,.0f} ms")
        report.add(sec, f"{label}: p99", run.quantile(0.99), "ms", P99_TARGET if run is o311 else None,
                   f"max {max(run.latencies_ms, default=float('nan')):,.0f} ms")
    share = o311.rate / bare.rate if bare.rate else 0.0
    report.add(sec, "bare aiohttp app answering 201 (the ceiling): req/s", bare.rate, "req/s",
               note=f"p50 {bare.quantile(0.5):,.0f} ms, p99 {bare.quantile(0.99):,.0f} ms; "
                    f"Open311 through the intake = {share:.0%} of it; CPU: {_cpu(bare)}")
    report.add(sec, "accepted reports on the intake topics exactly once (by id)",
               accepted - missing - doubled, "ids", Target("==", accepted),
               f"{missing} missing, {doubled} more than once")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.intake_http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per phase")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--broker-only", action="store_true", help="no router nor sink beside the intake")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state dir (logs)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the intake during the Open311 phase into this directory")
    parser.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server is not None:
        bare_server(args.bare_server)
        return 0
    state_dir = Path(tempfile.mkdtemp(prefix="veille-bench-intake-"))
    settings = Settings().model_copy(update={"state_dir": state_dir, "bootstrap_servers": "",
                                             "clickhouse_url": ""})
    broker = LocalBroker(settings)
    report = Report()
    failed: BaseException | None = None
    try:
        territory = load_territory(settings.territory_dir)
        info = broker.start(die_with_parent=True)
        say(f"broker pid {info.pid} on {info.bootstrap}")
        settings = settings.model_copy(update={"bootstrap_servers": info.bootstrap})
        logs = state_dir / "logs"
        bench_intake(report, settings, territory, requests=args.requests, clients=args.clients,
                     with_hub=not args.broker_only, logs=logs, profile=args.profile)
    except (Exception, KeyboardInterrupt) as exc:
        failed = exc
        say(f"FAILED: {exc!r}")
    finally:
        broker.stop(timeout=30)
        if args.keep:
            say(f"kept {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(report.render())
    for line in report.definitions:
        print(f"* {line}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
