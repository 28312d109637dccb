"""``veille publish``, ``veille import``, ``veille intake serve`` and ``veille simulate``.

Every command first makes sure the hub's topics exist (``veille topics create``), unless
``--no-create-topics`` is given (producers without admin rights in production), and
rejects incidents of municipalities outside the territory before they reach Kafka.

Exit codes: 0 all acknowledged; 1 some event failed (invalid line, delivery failure);
2 invalid command-line input or a rejected event.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from veille.config import Settings, get_settings
from veille.producers import intake_keys
from veille.producers.desk import accounts as desk_accounts
from veille.producers.relay import accounts as relay_accounts
from veille.producers.sdk import RECORD_FIELD, DeliveryReport, DeliverySummary, Publisher, Rejected
from veille.schemas.models import Channel, IncidentCategory, IncidentStatus, Record, Severity

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- shared


def territory_municipalities(settings: Settings) -> set[str] | None:
    """INSEE codes of the territory, or None when the territory cannot be loaded."""
    try:
        from veille.territory import load_territory

        return set(load_territory(settings.territory_dir).municipalities)
    except (ImportError, OSError) as exc:
        log.warning("territory not loaded (%s): municipality codes are not checked", exc)
        return None


def prepare(settings: Settings, args: argparse.Namespace) -> set[str] | None:
    """Create missing topics (unless told not to); the territory's municipalities."""
    if getattr(args, "create_topics", True):
        from veille.territory.topics import ensure_territory_topics

        ensure_territory_topics(settings)
    return territory_municipalities(settings)


def _print_rejected(exc: Rejected) -> int:
    print(f"rejected {exc.record_type}:", file=sys.stderr)
    for e in exc.errors:
        print(f"  {e.field}: {e.reason}", file=sys.stderr)
    return EXIT_REJECTED


def _publish_one(settings: Settings, args: argparse.Namespace, record: Record | dict[str, Any],
                 record_type: str) -> int:
    municipalities = prepare(settings, args)
    results: list[DeliveryReport] = []
    with Publisher(settings, client_id="veille-cli", known_municipalities=municipalities) as publisher:
        try:
            publisher.publish(record, record_type=record_type, on_result=results.append)
        except Rejected as exc:
            return _print_rejected(exc)
        publisher.flush()
    if not results or not results[0].ok:
        error = results[0].error if results else "no delivery report"
        print(f"not delivered: {error}", file=sys.stderr)
        return EXIT_FAILED
    r = results[0]
    print(json.dumps({"id": r.event_id, "topic": r.topic, "partition": r.partition, "offset": r.offset}))
    return EXIT_OK


def _read_json(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json.loads(text)


# --------------------------------------------------------------------------- publish


def _cmd_publish_incident(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    if (args.lat is None) != (args.lon is None):
        print("--lat and --lon go together", file=sys.stderr)
        return EXIT_REJECTED
    record: dict[str, Any] = {
        "id": args.id or str(uuid.uuid4()),
        "municipality": args.municipality,
        "category": args.category,
        "severity": args.severity,
        "occurred_at": args.occurred_at or now,
        "reported_at": now,
        "channel": args.channel,
        "description": args.description,
    }
    if args.lat is not None:
        record["location"] = {"lat": args.lat, "lon": args.lon}
    if args.address:
        record["address"] = args.address
    reporter = {k: v for k, v in (("name", args.reporter_name), ("phone", args.reporter_phone),
                                  ("email", args.reporter_email)) if v}
    if reporter:
        record["reporter"] = reporter
    return _publish_one(get_settings(), args, record, "Incident")


def _cmd_publish_alert(args: argparse.Namespace) -> int:
    try:
        data = _read_json(args.file)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    return _publish_one(get_settings(), args, data, "Alert")


def _cmd_publish_status(args: argparse.Namespace) -> int:
    if args.file:
        try:
            data = _read_json(args.file)
        except (OSError, json.JSONDecodeError) as exc:
            print(f"cannot read {args.file}: {exc}", file=sys.stderr)
            return EXIT_REJECTED
    else:
        if not (args.incident_id and args.agency and args.dispatch_id and args.status):
            print("give --file, or --incident-id, --agency, --dispatch-id and --status", file=sys.stderr)
            return EXIT_REJECTED
        data = {"id": str(uuid.uuid4()), "incident_id": args.incident_id, "agency_id": args.agency,
                "dispatch_id": args.dispatch_id, "status": args.status,
                "at": args.at or datetime.now(UTC), "note": args.note}
    return _publish_one(get_settings(), args, data, "StatusUpdate")


# --------------------------------------------------------------------------- import


def _cmd_import_cap(settings: Settings, args: argparse.Namespace, source: str) -> int:
    from veille.producers.cap_seen import SeenAlerts
    from veille.producers.cap_xml import CapError, read_source, validated
    from veille.producers.metrics import REJECTED

    try:
        alerts = validated(read_source(source))
    except CapError as exc:
        REJECTED.labels("Alert", "cap_xml").inc()
        where = "" if exc.where == RECORD_FIELD else f" {exc.where}:"
        print(f"{source}:{where} {exc.reason}", file=sys.stderr)
        return EXIT_REJECTED
    except OSError as exc:
        REJECTED.labels("Alert", "cap_xml").inc()
        print(f"{source}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    seen = SeenAlerts(settings.state_dir)
    alerts, already = seen.split(alerts)
    if already:
        print(f"{len(already)} alerts already published (same sender, identifier, sent): skipped")
    if not alerts:
        return EXIT_OK
    prepare(settings, args)
    acknowledged: set[str] = set()
    with Publisher(settings, client_id="veille-import") as publisher:
        for alert in alerts:
            publisher.publish(alert, record_type="Alert",
                              on_result=lambda r: acknowledged.add(r.event_id) if r.ok else None)
        summary = publisher.flush()
    seen.remember(a for a in alerts if a["identifier"] in acknowledged)
    seen.save()
    for line in _summary_lines(summary):
        print(line)
    return EXIT_OK if summary.ok else EXIT_FAILED


def _cmd_import(args: argparse.Namespace) -> int:
    from veille.producers.files import detect_format, import_file

    settings = get_settings()
    if args.file == "cap" and args.source:  # veille import cap FILE|URL
        return _cmd_import_cap(settings, args, args.source)
    if args.file == "vigicrues" and args.source:  # veille import vigicrues FILE|URL
        from veille.producers.vigicrues import SENDER, import_vigicrues

        prepare(settings, args)
        return import_vigicrues(settings, args.source, sent=args.sent, sender=args.sender or SENDER)
    if args.source:
        print("usage: veille import FILE | veille import cap|vigicrues FILE|URL", file=sys.stderr)
        return EXIT_REJECTED
    if args.format == "cap":
        return _cmd_import_cap(settings, args, args.file)
    path = Path(args.file)
    try:
        fmt = args.format or detect_format(path)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_REJECTED
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return EXIT_REJECTED
    municipalities = prepare(settings, args)
    from veille.notify.consent import ConsentWriter
    from veille.notify.settings import NotifySettings

    consents = ConsentWriter(settings, "veille-import-consents")
    with Publisher(settings, client_id="veille-import", known_municipalities=municipalities) as publisher:
        report = import_file(path, publisher, fmt=fmt, channel=args.channel, timezone=args.timezone,
                             consents=consents, notify=NotifySettings())
    consents.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for failure in report.failures:
            print(f"{path.name}:{failure}", file=sys.stderr)
        print(f"{report.ok} events published and acknowledged, "
              f"{len(report.failed_lines)} lines failed")
    return EXIT_OK if report.success else EXIT_FAILED


# --------------------------------------------------------------------------- intake


def _cmd_intake_serve(args: argparse.Namespace) -> int:
    from veille.producers.http_intake import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from veille.territory import load_territory

    settings = get_settings()
    municipalities = prepare(settings, args)
    territory = load_territory(settings.territory_dir)
    serve(settings, host=args.host, port=args.port, known_municipalities=municipalities,
          known_agencies=set(territory.agencies), territory=territory)
    return EXIT_OK


# --------------------------------------------------------------------------- simulate


def _paced(events: Iterator[Record], rate: float, seconds: float) -> Iterator[Record]:
    """The simulator's events at ``rate`` per second of wall clock, for ``seconds``."""
    start = time.monotonic()
    for n, event in enumerate(events):
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            return
        due = n / rate
        if due > elapsed:
            time.sleep(due - elapsed)
        yield event


def _summary_lines(summary: DeliverySummary) -> list[str]:
    lines = [f"{'type':14s} {'channel':30s} {'published':>10s} {'acknowledged':>13s}"]
    for key in sorted(summary.published):
        lines.append(f"{key[0]:14s} {key[1]:30s} {summary.published[key]:10d} "
                     f"{summary.acknowledged_by.get(key, 0):13d}")
    lines.append(f"total: {sum(summary.published.values())} published, {summary.acknowledged} acknowledged, "
                 f"{len(summary.failed)} failed, {summary.pending} pending")
    return lines


def simulated_stream(simulator: Any, total: int, flash_flood: bool) -> Iterator[Record]:
    """``total`` events of the simulator; with ``flash_flood``, its burst half-way through."""
    if not flash_flood:
        yield from simulator.events(total)
        return
    yield from simulator.events(total // 2)
    burst = simulator.flash_flood()
    yield from burst
    yield from simulator.events(max(total - total // 2 - len(burst), 0))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from veille.producers.simulator import Simulator, span_for
    from veille.telemetry import serve_metrics
    from veille.territory import load_territory

    if args.rate <= 0 or args.seconds <= 0:
        print("--rate and --seconds must be positive", file=sys.stderr)
        return EXIT_REJECTED
    settings = get_settings()
    prepare(settings, args)
    territory = load_territory(settings.territory_dir)
    if args.metrics_port is not None:
        _server, port = serve_metrics(args.metrics_port)
        print(f"metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr)
    total = max(1, round(args.seconds * args.rate))
    # The simulated clock runs ~30 s per incident: start far enough back that every event
    # (and the 90-minute flood burst) is in the past, which the models require.
    back = span_for(total) + (timedelta(hours=2) if args.flash_flood else timedelta(0))
    simulator = Simulator(territory, seed=args.seed, start=datetime.now(UTC) - back)
    rejected: Counter[str] = Counter()
    with Publisher(settings, client_id="veille-simulator",
                   known_municipalities=set(territory.municipalities), track_ids=False) as publisher:
        try:
            for event in _paced(simulated_stream(simulator, total, args.flash_flood), args.rate,
                                args.seconds):
                try:
                    publisher.publish(event)
                except Rejected as exc:
                    rejected[exc.reason] += 1
                publisher.poll(0)
        except KeyboardInterrupt:
            print("interrupted: flushing", file=sys.stderr)
        summary = publisher.flush()
    for line in _summary_lines(summary):
        print(line)
    if rejected:
        print(f"rejected by validation: {dict(rejected)}")
    return EXIT_OK if summary.ok and not rejected else EXIT_FAILED


# --------------------------------------------------------------------------- parser


def _no_topics_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                   help="do not create missing topics first (producer without admin rights); "
                        "see `veille topics create`")


def add_commands(sub: argparse._SubParsersAction) -> None:
    channels = [c.value for c in Channel]

    # veille publish ...
    pub = sub.add_parser(
        "publish", help="publish one incident, alert or status update",
        description="Validate one event, publish it and wait for the broker's acknowledgement. "
                    "Prints {id, topic, partition, offset}; exit 2 and the list of invalid fields "
                    "if the event is rejected (nothing is sent).")
    psub = pub.add_subparsers(dest="publish_command", metavar="TYPE", required=True)

    inc = psub.add_parser("incident", help="an incident report (phone call, desk visit...)",
                          description="Publish an incident to its municipality's intake topic.")
    inc.add_argument("--municipality", required=True, help="INSEE code, e.g. 35401")
    inc.add_argument("--category", required=True, choices=[c.value for c in IncidentCategory],
                     metavar="CATEGORY", help="one of: " + ", ".join(c.value for c in IncidentCategory))
    inc.add_argument("--severity", required=True, choices=[s.value for s in Severity])
    inc.add_argument("--lat", type=float, help="WGS84 latitude (with --lon)")
    inc.add_argument("--lon", type=float, help="WGS84 longitude (with --lat)")
    inc.add_argument("--address", help="postal address as given by the reporter")
    inc.add_argument("--channel", default=Channel.phone.value, choices=channels,
                     help="how the report reached the hub (default: phone)")
    inc.add_argument("--description", default="", help="free text (no personal data please)")
    inc.add_argument("--occurred-at", help="ISO 8601 time with offset (default: now)")
    inc.add_argument("--id", help="incident UUID, to re-send the same incident (default: new)")
    inc.add_argument("--reporter-name", help="reporter's name (sensitive: kept out of the shared store)")
    inc.add_argument("--reporter-phone", help="reporter's phone (sensitive)")
    inc.add_argument("--reporter-email", help="reporter's e-mail (sensitive)")
    _no_topics_option(inc)
    inc.set_defaults(func=_cmd_publish_incident)

    al = psub.add_parser("alert", help="a CAP 1.2 alert from a JSON file",
                         description="Publish a CAP alert (Alert fields, snake_case) read from a JSON file.")
    al.add_argument("--file", required=True, help="JSON file of the alert ('-' for stdin)")
    _no_topics_option(al)
    al.set_defaults(func=_cmd_publish_alert)

    st = psub.add_parser("status", help="a status update of an incident by an agency",
                         description="Publish an incident status update, from options or a JSON file.")
    st.add_argument("--file", help="JSON file of the StatusUpdate ('-' for stdin)")
    st.add_argument("--incident-id", help="UUID of the incident")
    st.add_argument("--agency", help="agency id, e.g. sdis35")
    st.add_argument("--dispatch-id", help="id of the dispatch the agency received for this incident")
    st.add_argument("--status", choices=[s.value for s in IncidentStatus])
    st.add_argument("--note", help="free text")
    st.add_argument("--at", help="ISO 8601 time with offset (default: now)")
    _no_topics_option(st)
    st.set_defaults(func=_cmd_publish_status)

    # veille import FILE
    imp = sub.add_parser(
        "import", help="publish a JSON-lines or CSV file of events",
        description="Publish every valid line of a file: JSON lines (one event per line, 'type' = "
                    "incident|alert|status, incident by default) or a CSV daily log of a town-hall desk "
                    "or phone line (columns: id, municipality, category, severity, lat, lon, address, "
                    "occurred_at, reported_at, channel, description, reporter_name, reporter_phone, "
                    "reporter_email). Bad lines are listed with line number, field and reason; the others "
                    "are published. Exit 1 if any line failed.")
    imp.add_argument("file", help="path of the file, or 'cap' followed by a CAP 1.2 XML file or URL, or "
                                  "'vigicrues' followed by a Vigicrues GeoJSON file or URL (CAP alerts per "
                                  "river section in vigilance; see veille/producers/vigicrues.py)")
    imp.add_argument("source", nargs="?", help=argparse.SUPPRESS)
    imp.add_argument("--format", choices=["jsonl", "csv", "cap"],
                     help="default: from the file extension (cap: a CAP 1.2 alert or Atom feed of them)")
    imp.add_argument("--channel", default=Channel.town_hall_desk.value, choices=channels,
                     help="channel of incidents that do not give one (default: town_hall_desk)")
    imp.add_argument("--timezone", default="Europe/Paris",
                     help="time zone of CSV times written without offset (default: Europe/Paris)")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.add_argument("--sent", type=datetime.fromisoformat,
                     help="vigicrues: time of the bulletin, ISO 8601 with offset (default: now)")
    imp.add_argument("--sender", help="vigicrues: CAP sender of the alerts (default: veille-vigicrues)")
    _no_topics_option(imp)
    imp.set_defaults(func=_cmd_import)

    # veille intake serve
    intake = sub.add_parser("intake", help="HTTP intake for apps and web forms",
                            description="HTTP endpoint publishing events posted by apps and forms.")
    isub = intake.add_subparsers(dest="intake_command", metavar="ACTION", required=True)
    srv = isub.add_parser(
        "serve", help="run the HTTP intake",
        description="POST /v1/incidents, /v1/alerts, /v1/status (202 once the broker acknowledged, "
                    "401/403 missing or bad API key (veille intake keys), 429 over quota, 422 invalid "
                    "fields, 400 invalid JSON, 408 slow body, 413 body too large, 503 broker not "
                    "acknowledging; /v1/alerts also takes CAP 1.2 XML); Open311 GeoReport v2 under "
                    "/open311/v2/ (services, requests, request status); the relays' form under /relais/ "
                    "(veille relay accounts); the agencies' desk under /agence/ (veille agency accounts); "
                    "GET /metrics, /healthz.")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, help="port (default: VEILLE_INTAKE_PORT, 8080)")
    _no_topics_option(srv)
    srv.set_defaults(func=_cmd_intake_serve)
    intake_keys.add_commands(isub)
    intake_keys.add_open311_commands(sub)
    relay_accounts.add_commands(sub)
    desk_accounts.add_commands(sub)

    # veille simulate
    sim = sub.add_parser(
        "simulate", help="publish a simulated stream of incidents, alerts and status updates",
        description="Publish the simulator's stream (every channel, the territory's municipalities) at a "
                    "fixed rate, then print published/acknowledged counts per type and channel.")
    sim.add_argument("--seconds", type=float, default=10.0, help="how long to run (default: 10)")
    sim.add_argument("--rate", type=float, default=50.0, help="events per second (default: 50)")
    sim.add_argument("--seed", type=int, default=0, help="random seed: same seed, same stream")
    sim.add_argument("--flash-flood", action="store_true", help="include a flash-flood burst")
    sim.add_argument("--metrics-port", type=int,
                     help="serve Prometheus /metrics on this port while running (0: any free port)")
    _no_topics_option(sim)
    sim.set_defaults(func=_cmd_simulate)
