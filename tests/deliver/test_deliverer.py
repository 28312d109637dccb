"""``veille deliver run`` on the real broker, with the real router, against real peers: a webhook
receiver verifying Standard Webhooks signatures, an SMTP server (aiosmtpd), a GeoReport v2
endpoint. Every dispatch of a body configured for a method reaches it, through a destination
down then back and a deliverer killed with kill -9 (duplicates carry the same dispatch id);
every attempt has its receipt; an Open311 body's status comes back to the hub as a StatusUpdate
that the router accepts (its dispatch id is genuine)."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from deliver_helpers import KEY, SECRET, GeoReport, Mailbox, Receiver, free_port
from hub_helpers import HubProcess, get_json, hub_settings, read_topics, wait_for

from veille.config import Settings
from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator
from veille.schemas.models import EventType, Incident
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id
from veille.territory.routing import route_incident
from veille.topics import Topics

pytestmark = pytest.mark.kafka

WEBHOOK, EMAIL, OPEN311 = "mairie-35401", "pm-35401", "mairie-35402"


@dataclass
class Peers:
    """The bodies' own systems, served from one thread of their own."""

    receiver: Receiver
    geo: GeoReport
    mailbox: Mailbox
    http: str
    smtp_port: int


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    receiver, geo, box = Receiver(), GeoReport(services=frozenset({"VOI-02", "EP-01", "ASS-03"})), Mailbox()
    app = web.Application()
    app.add_subapp("/body/", receiver.app())
    app.add_subapp("/gmao/", geo.app())
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        yield Peers(receiver, geo, box, f"http://127.0.0.1:{port}", smtp_port)
    finally:
        smtp.stop()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def territory_with_delivery(root: Path, peers: Peers, extra: dict[str, Any] | None = None) -> Path:
    """The example territory, three of its bodies reached by webhook, e-mail and Open311."""
    source = Path(__file__).resolve().parents[2] / "veille" / "territories" / "example"
    target = root / "territory"
    shutil.copytree(source, target)
    jurisdiction = yaml.safe_load((target / "jurisdiction.yaml").read_text())
    delivery = {
        WEBHOOK: {"webhook": {"url": f"{peers.http}/body/hook", "secret": {"env": "VEILLE_TEST_WHSEC"}}},
        EMAIL: {"email": {"to": ["astreinte@police-montveille.test"]}},
        OPEN311: {"open311": {"base_url": f"{peers.http}/gmao/open311/v2",
                              "api_key": {"env": "VEILLE_TEST_O311"},
                              "service_codes": {"damaged_road": "VOI-02", "broken_streetlight": "EP-01"},
                              "default_service_code": "ASS-03"}},
    }
    delivery.update(extra or {})
    for agency in jurisdiction["agencies"]:
        if agency["id"] in delivery:
            agency["delivery"] = delivery[agency["id"]]
    text = yaml.safe_dump(jurisdiction, allow_unicode=True, sort_keys=False)
    (target / "jurisdiction.yaml").write_text(text)
    return target


def deliverer_env(peers: Peers) -> dict[str, str]:
    return {"VEILLE_TEST_WHSEC": SECRET, "VEILLE_TEST_O311": KEY,
            "VEILLE_DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8", "VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1",
            "VEILLE_DELIVERY_SMTP_PORT": str(peers.smtp_port), "VEILLE_DELIVERY_SMTP_SECURITY": "none",
            "VEILLE_DELIVERY_RETRY_BASE_SECONDS": "0.2", "VEILLE_DELIVERY_RETRY_MAX_SECONDS": "2",
            "VEILLE_DELIVERY_OPEN311_POLL_SECONDS": "1", "VEILLE_DELIVERY_HTTP_TIMEOUT_SECONDS": "3"}


def expected(settings: Settings, incidents: list[Incident]) -> dict[str, set[str]]:
    """Dispatch ids each configured body must receive."""
    territory = load_territory(settings.territory_dir)
    key = settings.dispatch_key.get_secret_value().encode()
    out: dict[str, set[str]] = {WEBHOOK: set(), EMAIL: set(), OPEN311: set()}
    for inc in incidents:
        for target in route_incident(inc, territory).targets:
            if target.agency_id in out:
                out[target.agency_id].add(str(dispatch_id(key, EventType.incident, str(inc.id),
                                                          target.agency_id, target.service)))
    return out


def received(peers: Peers) -> dict[str, set[str]]:
    mails = {str(m["X-Veille-Dispatch-Id"]) for _, _, m in peers.mailbox.messages}
    posted = {f["attribute[veille_dispatch_id]"] for f in peers.geo.posted}
    return {WEBHOOK: {str(p["dispatch_id"]) for p in peers.receiver.received}, EMAIL: mails, OPEN311: posted}


def test_every_dispatch_reaches_its_body_through_an_outage_and_a_kill(kafka: Any, tmp_path: Path,
                                                                    peers: Peers) -> None:
    settings = hub_settings(kafka.settings, tmp_path, territory_dir=territory_with_delivery(tmp_path, peers))
    territory = load_territory(settings.territory_dir)
    assert territory.agencies[WEBHOOK].delivery.webhook is not None
    sim = Simulator(territory, seed=21, start=datetime.now(UTC) - timedelta(hours=1))
    incidents = [sim.incident(municipality=m, at=datetime.now(UTC) - timedelta(minutes=10))
                 for m in ("35401", "35402") for _ in range(40)]
    want = expected(settings, incidents)
    assert all(want.values()), want
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    peers.receiver.status = 500  # the body's server is down: every attempt fails, nothing is committed
    deliverer = HubProcess(settings, "deliver", "run", "--metrics-port", "0",
                           env=deliverer_env(peers)).start()
    try:
        deliverer.info("deliver.json")
        with Publisher(settings, client_id="test-deliver") as pub:
            for inc in incidents[:40]:
                pub.publish(inc)
        wait_for(lambda: received(peers)[EMAIL] >= want[EMAIL] & _ids_of(settings, incidents[:40], EMAIL), 90,
                 "the first e-mails")
        time.sleep(3)
        deliverer.kill()  # kill -9 while the webhook is down and the rest is in flight
        with Publisher(settings, client_id="test-deliver-2") as pub:
            for inc in incidents[40:]:
                pub.publish(inc)
        deliverer.start()
        time.sleep(3)
        peers.receiver.status = 204  # back
        wait_for(lambda: all(received(peers)[a] >= want[a] for a in want), 120, "every dispatch delivered")
        # A receiver that de-duplicates on the dispatch id sees each one once: same id, same body.
        by_id: dict[str, list[dict[str, Any]]] = {}
        for payload in peers.receiver.received:
            by_id.setdefault(str(payload["dispatch_id"]), []).append(payload)
        assert all(p == ps[0] for ps in by_id.values() for p in ps)
        assert all(h["webhook-id"] == str(p["dispatch_id"])
                   for h, p in zip(peers.receiver.headers, peers.receiver.received, strict=True))
        assert peers.receiver.refused == []  # every signature verified

        # Receipts: every attempt's outcome, the outage's retries included.
        topics = Topics(settings.topic_prefix)
        receipts = read_topics(settings, [topics.delivery], timeout=30, until=lambda out: {
            str(d.value["dispatch_id"]) for _, d in out
            if d.value["outcome"] == "delivered" and d.value["method"] == "webhook"} >= want[WEBHOOK])
        outcomes = {(d.value["method"], d.value["outcome"]) for _, d in receipts}
        assert {("webhook", "retry"), ("webhook", "delivered"), ("email", "delivered"),
                ("open311", "delivered"), ("kafka", "delivered")} <= outcomes
        assert any(d.value["status_code"] == 500 for _, d in receipts)

        # The Open311 body closes one request: the hub hears it as that body's status update.
        # (Each POST the server accepted made one request, in order; a dispatch re-sent after the
        # kill made two: take one sent once, whose request is the one the tracker follows.)
        ids = [f["attribute[veille_dispatch_id]"] for f in peers.geo.posted]
        sent = next(i for i in ids if ids.count(i) == 1)
        request = list(peers.geo.requests.values())[ids.index(sent)]
        request["status"] = "closed"
        routed = read_topics(settings, [topics.routed], timeout=60, until=lambda out: any(
            str(d.value.get("dispatch_id")) == sent and d.value.get("status") == "resolved" for _, d in out))
        assert any(str(d.value.get("dispatch_id")) == sent and d.value.get("agency_id") == OPEN311
                   for _, d in routed), "the router did not accept the Open311 body's status"
    finally:
        deliverer.stop()
        router.stop()


def _ids_of(settings: Settings, incidents: list[Incident], agency: str) -> set[str]:
    return expected(settings, incidents)[agency]


def _metric(url: str, name: str, agency: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f'{name}{{agency="{agency}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_slow_tls_failing_and_forbidden_destinations_delay_nobody_else(kafka: Any, tmp_path: Path,
                                                                        peers: Peers) -> None:
    """A slow webhook (timeouts), a TLS handshake that fails, a URL in a forbidden network
    (SSRF): each is retried on its own timer and marked undelivered in time, while the e-mail
    body gets its dispatches at once; the slow one, once fast again, gets every dispatch."""
    plain = peers.http.removeprefix("http://")
    extra = {
        "cc-mediation": {"webhook": {"url": "http://169.254.169.254/latest/meta-data/",
                                     "secret": {"env": "VEILLE_TEST_WHSEC"}}},
        "pm-35402": {"webhook": {"url": f"https://{plain}/body/hook",  # TLS to a plain HTTP port
                                 "secret": {"env": "VEILLE_TEST_WHSEC"}}},
    }
    settings = hub_settings(kafka.settings, tmp_path,
                            territory_dir=territory_with_delivery(tmp_path, peers, extra))
    territory = load_territory(settings.territory_dir)
    sim = Simulator(territory, seed=22, start=datetime.now(UTC) - timedelta(hours=1))
    incidents = [sim.incident(municipality=m, at=datetime.now(UTC) - timedelta(minutes=10))
                 for m in ("35401", "35402") for _ in range(40)]
    want = expected(settings, incidents)
    peers.receiver.delay = 5.0  # beyond the deliverer's 3 s timeout
    before = {a: set(v) for a, v in received(peers).items()}  # the first test's, same peers
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    deliverer = HubProcess(settings, "deliver", "run", "--metrics-port", "0", env={
        **deliverer_env(peers), "VEILLE_DELIVERY_UNDELIVERED_AFTER_MINUTES": "0.1"}).start()
    try:
        metrics_url = deliverer.info("deliver.json")["metrics"]
        with Publisher(settings, client_id="test-deliver-faults") as pub:
            for inc in incidents:
                pub.publish(inc)
        began = time.monotonic()
        wait_for(lambda: received(peers)[EMAIL] - before[EMAIL] >= want[EMAIL], 60, "the e-mails")
        emails_after = time.monotonic() - began
        peers.receiver.delay = 0.0
        wait_for(lambda: received(peers)[WEBHOOK] >= want[WEBHOOK], 90, "the slow webhook, once fast")
        wait_for(lambda: _metric(metrics_url, "veille_deliver_oldest_undelivered_seconds",
                                 "cc-mediation") > 0, 60, "undelivered, forbidden destination")
        receipts = read_topics(settings, [Topics(settings.topic_prefix).delivery], timeout=10,
                               until=lambda out: False)
        by_agency: dict[str, set[tuple[str, str]]] = {}
        replies: dict[str, list[str]] = {}
        for _, d in receipts:
            v = d.value
            by_agency.setdefault(v["agency_id"], set()).add((v["method"], v["outcome"]))
            replies.setdefault(v["agency_id"], []).append(v["reply"] or "")
        assert ("webhook", "undelivered") in by_agency["cc-mediation"]
        assert ("webhook", "delivered") not in by_agency["cc-mediation"]
        assert any("169.254.169.254" in r or "link-local" in r for r in replies["cc-mediation"])
        assert ("webhook", "delivered") not in by_agency["pm-35402"]
        assert any("ssl" in r.lower() or "tls" in r.lower() for r in replies["pm-35402"])
        assert any(o == "retry" for m, o in by_agency[WEBHOOK] if m == "webhook")  # the timeouts
        # Every e-mail went out before the slow webhook's first success: its timeouts held back
        # nobody else.
        delivered_at = {(v["agency_id"], v["method"]): [] for _, d in receipts for v in [d.value]}
        for _, d in receipts:
            if d.value["outcome"] == "delivered":
                delivered_at[(d.value["agency_id"], d.value["method"])].append(d.value["at"])
        assert max(delivered_at[(EMAIL, "email")]) < min(delivered_at[(WEBHOOK, "webhook")])
        print(f"\ne-mails delivered {emails_after:.1f}s after publishing while the webhook timed out")
    finally:
        peers.receiver.delay = 0.0
        deliverer.stop()
        router.stop()


LINK = re.compile(r"(http://127\.0\.0\.1:\d+/reponse/[0-9a-f-]{36}/[A-Za-z0-9._~-]+)")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def _answer(client: httpx.Client, link: str, status: str) -> int:
    page = client.get(link)
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match, page.text
    resp = client.post(link, data={"status": status, "csrf_token": match.group(1) or match.group(2)})
    return resp.status_code


def test_an_email_body_answers_from_the_link_and_the_store_and_console_show_it(
        kafka: Any, tmp_path: Path, peers: Peers) -> None:
    """The issue's "done when": a dispatch to a body reached by e-mail is in a real mailbox within
    seconds, its link answers *pris en compte* then *résolu*, and the store and the console show
    the dispatch delivered, acknowledged and resolved."""
    settings = hub_settings(kafka.settings, tmp_path, sink_batch_seconds=0.3,
                            territory_dir=territory_with_delivery(tmp_path, peers))
    territory = load_territory(settings.territory_dir)
    sim = Simulator(territory, seed=23, start=datetime.now(UTC) - timedelta(hours=1))
    at = datetime.now(UTC) - timedelta(minutes=3)
    incident = next(i for i in (sim.incident(municipality="35401", at=at) for _ in range(200))
                    if any(t.agency_id == EMAIL for t in route_incident(i, territory).targets))
    (wanted,) = expected(settings, [incident])[EMAIL]
    port = free_port()
    link_env = {"VEILLE_DELIVERY_LINK_KEY": "test-link-key-for-the-e2e"}
    intake = HubProcess(settings, "intake", "serve", "--port", str(port), env=link_env).start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    deliverer = HubProcess(settings, "deliver", "run", "--metrics-port", "0", env={
        **deliverer_env(peers), **link_env,
        "VEILLE_DELIVERY_RESPONSE_BASE_URL": f"http://127.0.0.1:{port}/reponse"}).start()
    try:
        sink_url = sink.info("sink.json")["url"]
        deliverer.info("deliver.json")
        with Publisher(settings, client_id="test-deliver-e2e") as pub:
            pub.publish(incident)
        began = time.monotonic()

        def mail() -> Any:
            return next((m for _, _, m in peers.mailbox.messages
                         if str(m["X-Veille-Dispatch-Id"]) == wanted), None)

        wait_for(lambda: mail() is not None, 60, "the e-mail in the mailbox")
        print(f"\ne-mail in the mailbox {time.monotonic() - began:.1f}s after publishing")
        text = mail().get_body(preferencelist=("plain",)).get_content()
        (link,) = set(LINK.findall(text))
        with httpx.Client(timeout=20, follow_redirects=False) as client:
            assert _answer(client, link, "acknowledged") == 303
            assert _answer(client, link, "resolved") == 303
            assert _answer(client, link, "resolved") == 409  # once per status

        def lifecycle() -> set[str]:
            stats = get_json(f"{sink_url}/console/api/view")
            bodies = {b["agency_id"]: b for b in stats["delivery"]["bodies"]}
            states = set()
            if bodies.get(EMAIL, {}).get("delivered", 0) >= 1:
                states.add("delivered")
            return states

        wait_for(lambda: "delivered" in lifecycle(), 60, "the console showing the e-mail delivered")
        statuses = {(d.value["dispatch_id"], d.value["status"]) for _, d in read_topics(
            settings, [Topics(settings.topic_prefix).routed], timeout=30,
            until=lambda out: {str(d.value.get("dispatch_id")) for _, d in out
                               if d.value.get("status") in ("acknowledged", "resolved")} >= {wanted})
            if "status" in d.value}
        assert {(uuid.UUID(wanted), "acknowledged"), (uuid.UUID(wanted), "resolved")} <= statuses
        wait_for(lambda: get_json(f"{sink_url}/stats")["status_events"] >= 2, 60,
                 "both answers in the store")
    finally:
        for proc in (deliverer, sink, router, intake):
            proc.stop()
