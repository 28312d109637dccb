"""``veille demo``: the whole hub on the local broker and the embedded store, then stops it.

broker → topics → sink + router (subprocesses, as in production) → the simulator's
stream with a flash flood crossing municipal boundaries → wait until the store has every
acknowledged report → print how the flood was routed and the monitoring-cell indicators.
Everything the demo started is stopped by PID at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from veille.config import Settings, get_settings
from veille.consumer import LastStep, StreamRunner
from veille.kafka import CommittedLag, Message
from veille.local.broker import LocalBroker
from veille.local.demo_followup import run_followup_demo
from veille.local.demo_notify import hear_back
from veille.local.demo_pcs import cascade as pcs_cascade
from veille.local.demo_storm import storm_lines
from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.reads.indicators import LOCAL_TZ, render_text
from veille.schemas import codec
from veille.schemas.models import Alert, Incident, Record, RoutedAlert, RoutedIncident
from veille.security import provision, settings_for, user_env
from veille.statedir import wait_for_process_info
from veille.telemetry import serve_metrics
from veille.territory import Territory, load_territory
from veille.territory.topics import territory_topic_specs
from veille.topics import ROUTED_TYPES, Topics, ensure_topics


def _say(msg: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


@contextmanager
def _process(name: str, args: list[str], log_dir: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "veille.cli", *args], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        _say(f"stopped {name} (pid {proc.pid}, exit {proc.returncode}); log: {log_dir / (name + '.log')}")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _indicators(sink_url: str, municipalities: list[str], start: datetime, end: datetime) -> Any:
    query = urllib.parse.urlencode({"municipalities": ",".join(municipalities),
                                    "from": start.date().isoformat(), "to": end.date().isoformat()})
    return _get_json(f"{sink_url}/indicators?{query}")


def _stream(territory: Territory, seconds: float, rate: float, seed: int
            ) -> tuple[list[Record], Alert, set[str]]:
    """The simulator's events: ordinary reports, a flash flood in the middle, more reports."""
    n = max(10, int(seconds * rate))
    start = datetime.now(UTC) - span_for(n + 60)
    sim = Simulator(territory, seed=seed, start=start)
    events: list[Record] = list(sim.events(n // 2))
    flood = sim.flash_flood(incidents=40)
    events += flood + list(sim.events(n - n // 2))
    alert = next(e for e in flood if isinstance(e, Alert))
    return events, alert, {str(e.id) for e in flood if isinstance(e, Incident)}


def _caught_up(settings: Settings) -> bool:
    """Router, sink and deliverer have committed everything there is to read.

    Read with consumers that never join the groups, not the admin API: librdkafka 2.16's
    ListConsumerGroupOffsets can crash the process while a group is forming (see veille/kafka.py).
    """
    conf = settings.kafka_client_config()
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    sources = [topics.intake(m) for m in sorted(territory.municipalities)]
    probes = [CommittedLag(conf, f"{settings.topic_prefix}-router", [*sources, topics.alerts, topics.status]),
              CommittedLag(conf, f"{settings.topic_prefix}.sink", [topics.routed]),
              # The deliverer commits a dispatch only once its body has it.
              CommittedLag(conf, f"{settings.topic_prefix}.deliver",
                           [topics.dispatch(a) for a in sorted(territory.agencies)])]
    try:
        lags = [probe.lag() for probe in probes]
    except KafkaException:  # a coordinator still loading: not yet
        return False
    finally:
        for probe in probes:
            probe.close()
    return all(lag and not any(lag.values()) for lag in lags)


def _dead_letters(metrics_url: str) -> dict[str, int]:
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "veille_router_dead_lettered":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["reason"]] = int(sample.value)
    return out


def _routing_of(settings: Settings, flood_ids: set[str], alert_id: str, timeout: float = 30) -> list[Any]:
    """Read back from the routed topic how the flood's alert and reports were routed."""
    collect = _Collect(flood_ids, alert_id)
    runner = StreamRunner({**settings.kafka_client_config(), "group.id": f"demo-{uuid.uuid4()}",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False},
                          [Topics(settings.topic_prefix).routed], lambda _offsets, _assignment: collect)
    deadline = time.monotonic() + timeout
    runner.run(until=lambda: len(collect.found) > len(flood_ids) or time.monotonic() > deadline)
    return collect.found


class _Collect(LastStep[Message]):
    """The demo reader's one step: keep the flood's routed reports and its routed alert."""

    def __init__(self, flood_ids: set[str], alert_id: str) -> None:
        self.flood_ids = flood_ids
        self.alert_id = alert_id
        self.found: list[Any] = []

    def submit(self, item: Message) -> None:
        decoded = codec.decode(item.value, expect=ROUTED_TYPES)
        if decoded.record_type == "RoutedIncident" and str(decoded.value["id"]) in self.flood_ids:
            self.found.append(RoutedIncident.from_avro(decoded.value))
        elif decoded.record_type == "RoutedAlert" and decoded.value["identifier"] == self.alert_id:
            self.found.append(RoutedAlert.from_avro(decoded.value))


def _stored_of(sink_url: str, ids: set[str]) -> int:
    """How many of this run's reports the store holds (not the store's window: earlier runs
    in the same state dir are there too)."""
    with urllib.request.urlopen(f"{sink_url}/stats?ids=1", timeout=60) as resp:
        return len(ids & set(json.loads(resp.read())["ids"]))


def _print_flood(routed: list[Any], territory: Territory) -> None:
    alerts = [r for r in routed if isinstance(r, RoutedAlert)]
    incidents = [r for r in routed if isinstance(r, RoutedIncident)]
    name = {code: m.name for code, m in territory.municipalities.items()}
    for alert in alerts:
        print(f"\nFlash-flood alert '{alert.headline}'")
        affected = ", ".join(f"{m} {name.get(m, m)}" for m in alert.municipalities)
        print(f"  affected municipalities: {affected}")
        for t in alert.dispatches:
            print(f"  -> {t.agency_id:24s} {t.service.value:20s} rule={t.rule}")
    print(f"\nFlood reports routed: {len(incidents)} across "
          f"{len({i.municipality for i in incidents})} municipalities")
    per: Counter[tuple[str, str, str, bool]] = Counter()
    for inc in incidents:
        for t in inc.dispatches:
            per[(inc.municipality, t.agency_id, t.service.value, t.cross_boundary)] += 1
    print(f"  {'where':28s} {'agency':24s} {'service':16s} {'reports':>7s}  cross-boundary")
    for (muni, agency, service, cross), count in sorted(per.items()):
        where = f"{muni} {name.get(muni, '')}"[:28]
        print(f"  {where:28s} {agency:24s} {service:16s} {count:7d}  {'yes' if cross else ''}")


def _console_url(sink_url: str, start: datetime, end: datetime) -> str:
    query = urllib.parse.urlencode({"from": start.date().isoformat(), "to": end.date().isoformat()})
    return f"{sink_url}/console/?{query}"


def _keep_running(console: str) -> None:
    """Until Ctrl-C (or SIGTERM): the callers' context managers then stop what the demo started."""

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"console: {console}", flush=True)
    _say("the hub and its console keep running; Ctrl-C stops everything the demo started")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(seconds: float, rate: float, seed: int, keep_running: bool = False) -> int:
    # The bodies' systems need aiosmtpd (the dev extra `make demo` installs); imported here so
    # that `veille --help` works in an image built without it.
    from veille.local.demo_delivery import LocalBodies
    from veille.local.demo_photos import photo_report

    settings = get_settings()
    territory = load_territory(settings.territory_dir)
    logs = settings.state_dir / "demo-logs"
    broker = LocalBroker(settings)
    ours = not broker.status().running
    t0 = time.monotonic()
    info = broker.start()
    _say(f"Kafka {info.kafka_version} (KRaft) on {info.bootstrap} "
         f"({'started in %.1fs' % (time.monotonic() - t0) if ours else 'already running'})")
    try:
        ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings))
        # With auth on, the router, the sink and the simulator's stream run as their own Kafka
        # users: the demo proves their ACLs suffice. Quotas are left to `security provision`.
        users: dict[str, dict[str, str]] = {"router": {}, "sink": {}, "deliver": {}}
        publisher_settings = settings
        if settings.kafka_credentials().mechanism:
            report = provision(settings, quotas=False)
            users = {user: user_env(settings, user) for user in users}
            publisher_settings = settings_for(settings, "simulator")
            _say(f"Kafka users and ACLs provisioned ({report.acls_total} ACLs, {report.seconds:.1f}s); "
                 "router, sink, deliverer and simulator log in as themselves")
        with LocalBodies(settings.territory_dir, settings.state_dir) as bodies, \
                _process("sink", ["sink", "run", "--port", "0"], logs,
                         {**users["sink"], **bodies.env}) as sink, \
                _process("router", ["router", "run", "--metrics-port", "0"], logs,
                         {**users["router"], **bodies.env}) as router, \
                _process("deliver", ["deliver", "run", "--metrics-port", "0"], logs,
                         {**users["deliver"], **bodies.env}) as deliver, \
                _process("grouping", ["router", "grouping", "--metrics-port", "0"], logs,
                         {**users["router"], **bodies.env}):
            sink_url = wait_for_process_info(settings.state_dir / "sink.json", sink)["url"]
            router_metrics = wait_for_process_info(settings.state_dir / "router.json", router)["metrics"]
            wait_for_process_info(settings.state_dir / "deliver.json", deliver)
            _say(f"bodies without a Kafka consumer, on loopback: webhook, SMTP mailbox, Open311 "
                 f"({bodies.http}, smtp {bodies.smtp_port})")
            _server, demo_port = serve_metrics(0)
            _say(f"sink (chDB at {settings.chdb_path}) on {sink_url}; router metrics {router_metrics}")
            _say(f"console (while the demo runs): {sink_url}/console/")

            events, flood_alert, flood_ids = _stream(territory, seconds, rate, seed)
            events.append(photo_report(settings))  # a report with a photo (veille/local/demo_photos.py)
            _say(f"publishing {len(events)} events over ~{len(events) / rate:.0f}s "
                 f"(flash flood in the middle: 1 CAP alert + {len(flood_ids)} reports)")
            started = datetime.now(UTC)
            with Publisher(publisher_settings, client_id="veille-demo") as pub:
                pace = 1.0 / rate
                for i, event in enumerate(events):
                    pub.publish(event)
                    if i % 50 == 0:
                        pub.poll(0)
                    time.sleep(pace)
                summary = pub.flush(30)
            del pub  # drops librdkafka's connections now, not when the broker is already gone
            incidents_sent = sum(isinstance(e, Incident) for e in events)
            _say(f"acknowledged by Kafka: {summary.acknowledged}, failed: {len(summary.failed)}")

            municipalities = sorted(territory.municipalities)
            span_start = min(e.reported_at for e in events if isinstance(e, Incident)) - timedelta(days=1)
            # The indicators count by the territory's local date, `to` excluded: tomorrow there
            # (after 23:00 UTC, "today" in Paris is already the next UTC date).
            end = datetime.now(ZoneInfo(LOCAL_TZ)) + timedelta(days=1)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _caught_up(settings):
                time.sleep(1)
            stored = _stored_of(sink_url, {str(e.id) for e in events if isinstance(e, Incident)})
            dead = _dead_letters(router_metrics)
            latency = (datetime.now(UTC) - started).total_seconds()
            _say(f"router, sink and deliverer caught up {latency:.1f}s after the first publish: "
                 f"{stored} of {incidents_sent} reports stored, dead-lettered by the router: "
                 f"{sum(dead.values())} {dead or ''}")

            _print_flood(_routing_of(settings, flood_ids, flood_alert.identifier), territory)
            print(*storm_lines(settings, publisher_settings, territory), sep="\n")  # grouping
            print("\nDelivered to the bodies that run no Kafka consumer:", *bodies.summary(), sep="\n")
            run_followup_demo(settings, publisher_settings, logs, users["router"], territory, sink_url)
            print(*hear_back(settings, bodies, logs, _process), sep="\n")  # residents hear back
            print(*pcs_cascade(settings, bodies.env, logs, _process, flood_alert.identifier), sep="\n")

            print()
            print(render_text(_indicators(sink_url, municipalities, span_start, end)))
            print(f"\nPrometheus metrics while it ran: router {router_metrics}, sink {sink_url}/metrics, "
                  f"demo producer http://127.0.0.1:{demo_port}/metrics")
            print(f"Same indicators as JSON: veille indicators --municipalities {','.join(municipalities)} "
                  f"--from {span_start.date()} --to {end.date()} --json  (while a sink runs)")
            ok = stored + dead.get("unroutable", 0) >= incidents_sent and not summary.failed
            console = _console_url(sink_url, span_start, end)
            if keep_running:
                # The relays' form is served by the HTTP intake, which runs as its own Kafka user.
                intake_env = user_env(settings, "intake") if settings.kafka_credentials().mechanism else None
                with relay_form(settings, logs, intake_env) as lines:
                    print(*lines, sep="\n")
                    _keep_running(console)
            else:
                print(f"console: {console}  (open while the demo runs; `veille demo --keep-running` "
                      "keeps it up until Ctrl-C)")
    finally:
        if ours:
            broker.stop()
            _say("stopped the local broker")
    _say("done" if ok else "INCOMPLETE: some acknowledged reports are neither stored nor dead-lettered")
    return 0 if ok else 1


@contextmanager
def relay_form(settings: Settings, log_dir: Path, env: dict[str, str] | None = None) -> Iterator[list[str]]:
    """For ``--keep-running``: the HTTP intake (it serves the relays' form) and a demo relay.

    Yields the lines to print: the form's URL and the demo relay's login. The intake is
    stopped by PID on exit, like the demo's other processes.
    """
    import socket

    from veille.producers.desk.demo import demo_lines as desk_demo_lines
    from veille.producers.relay.demo import demo_account

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    login, password, town = demo_account(settings, load_territory(settings.territory_dir))
    with _process("intake", ["intake", "serve", "--port", str(port)], log_dir, env) as intake:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get_json(f"{url}/healthz")
                break
            except OSError:
                if intake.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the intake did not start; log: {log_dir / 'intake.log'}") from None
                time.sleep(0.3)
        yield [f"Relays' form (town-hall desk of {town}): {url}/relais/",
               f"  login {login}  password {password}",
               *desk_demo_lines(settings, load_territory(settings.territory_dir), url)]


def _cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    seed = args.seed if args.seed is not None else int(time.time())
    return run_demo(args.seconds, args.rate, seed, args.keep_running)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole hub on the local broker and embedded store",
                       description="Start the broker, router and sink, publish the simulator's stream "
                                   "with a cross-boundary flash flood, print the routing and the "
                                   "monitoring-cell indicators read from the store, stop everything.")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the simulated stream")
    p.add_argument("--rate", type=float, default=50.0, help="events per second")
    p.add_argument("--seed", type=int, default=None,
                   help="simulator seed (default: the clock, so event ids differ between runs; "
                        "re-sending an id with other content is dead-lettered by design)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the demo, keep the broker, router, sink and console up (prints "
                        "'console: <url>') until Ctrl-C, then stop everything the demo started")
    p.set_defaults(func=_cmd_demo)
