"""The agencies' desk in a real headless Chromium, on a real `veille intake serve`, router, sink
and broker.

Keyboard only: log in, see the dispatch the router just made of a published incident, open it,
answer *pris en compte* then *résolu*; the StatusUpdates are on Kafka in the body's name, the
router forwards them, the store and the console count the incident resolved. Two bodies each
see their own dispatch only. axe-core finds nothing on the login page, the inbox and a
dispatch's page. With the intake stopped, an action is kept in the browser and published once
when the intake is back.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browser_helpers import AXE_TAGS, ConsoleErrors, launch_browser, screenshot
from hub_helpers import HubProcess, get_json, hub_settings, read_topics, wait_for

from veille.config import Settings
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.producers.sdk import Publisher
from veille.schemas.models import EventType, Incident, ServiceKind
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

TABLET = {"viewport": {"width": 1024, "height": 1366}, "locale": "fr-FR", "timezone_id": "Europe/Paris"}
pytestmark = pytest.mark.kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Intake:
    """`veille intake serve` as a child process on a fixed port, so it can come back there."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.port = settings, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: HubProcess | None = None

    def start(self) -> None:
        self.proc = HubProcess(self.settings, "intake", "serve", "--port", str(self.port)).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.proc is not None and self.proc.proc.poll() is None, self.proc.log()
                time.sleep(0.3)
        raise AssertionError(f"intake not ready:\n{self.proc.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


Hub = tuple[Settings, Intake, dict[str, str]]


@pytest.fixture(scope="module")
def hub(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    settings = hub_settings(kafka.settings, tmp_path_factory.mktemp("desk-browser"), sink_batch_seconds=0.3)
    store = AccountStore(settings.state_dir / ACCOUNTS_FILE)
    logins: dict[str, str] = {}
    for login, agency in (("voirie-montveille", "mairie-35401"), ("voirie-saint-meen", "mairie-35402")):
        _, logins[login] = store.issue(f"Services techniques {agency}", agency_id=agency, login=login)
    intake = Intake(settings)
    intake.start()
    try:
        yield settings, intake, logins
    finally:
        intake.stop()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core loaded from the intake itself (the pages' CSP forbids an inline script)."""
    page.add_script_tag(url="/agence/static/vendor/axe.min.js")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def tab_to(page: Any, element_id: str, limit: int = 80) -> None:
    """Press Tab until ``element_id`` has the focus: the only way a keyboard user gets there."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} never reached with Tab")


def log_in(page: Any, url: str, login: str, password: str) -> None:
    page.goto(url + "/agence/")
    assert page.url.endswith("/agence/connexion")
    tab_to(page, "login")
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/agence/")


def incident(municipality: str, lat: float, lon: float) -> Incident:
    now = datetime.now(UTC)
    return Incident.model_validate({
        "id": str(uuid.uuid4()), "municipality": municipality, "category": "damaged_road",
        "severity": "severe",
        "location": {"lat": lat, "lon": lon}, "occurred_at": now - timedelta(minutes=10), "reported_at": now,
        "channel": "app", "description": "Nid-de-poule profond devant l'école",
        "reporter": {"name": "Jeanne Martin", "phone": "0611223344"}})


def the_dispatch(settings: Settings, event: Incident, agency: str) -> str:
    key = settings.dispatch_key.get_secret_value().encode()
    return str(dispatch_id(key, EventType.incident, str(event.id), agency, ServiceKind.public_works))


def shows(page: Any, selector: str, timeout: float = 90) -> None:
    """Wait for ``selector`` on the inbox: the page polls every 15 s; asking sooner is the same."""
    def there() -> bool:
        if page.query_selector(selector) is not None:
            return True
        page.evaluate("window.deskRefresh && window.deskRefresh()")
        return False

    wait_for(there, timeout, selector)


def statuses(settings: Settings, dispatch: str, wanted: int, timeout: float = 30) -> list[dict[str, Any]]:
    records = read_topics(settings, [Topics(settings.topic_prefix).status], timeout=timeout,
                          until=lambda rs: len(
        [r for _, r in rs if str(r.value.get("dispatch_id")) == dispatch]) >= wanted)
    return [r.value for _, r in records if str(r.value.get("dispatch_id")) == dispatch]


def test_keyboard_only_acknowledge_then_resolve_and_two_bodies(hub: Hub) -> None:
    settings, intake, logins = hub
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    territory = load_territory()
    montveille = territory.municipalities["35401"].geometry.representative_point()
    saint_meen = territory.municipalities["35402"].geometry.representative_point()
    mine, theirs = incident("35401", montveille.y, montveille.x), incident("35402", saint_meen.y,
                                                                           saint_meen.x)
    ours, other = the_dispatch(settings, mine, "mairie-35401"), the_dispatch(settings, theirs, "mairie-35402")
    try:
        with Publisher(settings, client_id="test-desk-browser") as publisher:
            publisher.publish(mine)
            publisher.publish(theirs)
            assert publisher.flush(30).ok
        with launch_browser() as browser:
            page = browser.new_page(**TABLET)
            errors = ConsoleErrors(page)
            page.goto(intake.url + "/agence/connexion")
            assert axe_violations(page) == []
            screenshot(page, "desk-login")
            log_in(page, intake.url, "voirie-montveille", logins["voirie-montveille"])
            shows(page, f"#ref-{ours}")
            page.wait_for_selector("#map path.leaflet-interactive, #map svg path")
            assert page.query_selector(f"#ref-{other}") is None
            assert axe_violations(page) == []
            screenshot(page, "desk-inbox")
            # Open it with the keyboard, then answer "pris en compte" (the first answer, chosen).
            tab_to(page, f"ref-{ours}")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/agence/dispatches/{ours}")
            text = page.inner_text("main")
            assert "Nid-de-poule profond devant l'école" in text and "Reçu" in page.inner_text("#status-now")
            assert axe_violations(page) == []
            screenshot(page, "desk-dispatch")
            tab_to(page, "one-submit")
            page.keyboard.press("Enter")
            page.wait_for_url("**?fait=acknowledged")
            assert "Pris en compte" in page.inner_text("#status-now")
            # Then "résolu": to the answers' group, two arrows on, send.
            tab_to(page, "one-status-acknowledged")
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            assert page.eval_on_selector("#one-status-resolved", "i => i.checked")
            tab_to(page, "one-submit")
            page.keyboard.press("Enter")
            page.wait_for_url("**?fait=resolved")
            assert "Résolu" in page.inner_text("#status-now")
            assert axe_violations(page) == []
            screenshot(page, "desk-dispatch-resolved")
            assert errors.messages == []
            # The other body sees its own dispatch and not ours; ours by URL is "not found".
            second = browser.new_context(**TABLET).new_page()
            log_in(second, intake.url, "voirie-saint-meen", logins["voirie-saint-meen"])
            shows(second, f"#ref-{other}")
            assert second.query_selector(f"#ref-{ours}") is None
            assert second.goto(intake.url + f"/agence/dispatches/{ours}").status == 404
            assert "Nid-de-poule" not in second.inner_text("main")
            screenshot(second, "desk-inbox-other-body")
        updates = statuses(settings, ours, 2)
        assert [u["status"] for u in sorted(updates, key=lambda u: u["at"])] == ["acknowledged", "resolved"]
        assert {u["agency_id"] for u in updates} == {"mairie-35401"}
        # The router forwarded them; the store and the console count the incident resolved.
        routed = read_topics(settings, [Topics(settings.topic_prefix).routed], timeout=60,
                             until=lambda rs: len(
            [r for _, r in rs if str(r.value.get("dispatch_id")) == ours]) >= 2)
        assert {r.value["status"] for _, r in routed if str(r.value.get("dispatch_id")) == ours} == {
            "acknowledged", "resolved"}
        sink_url = sink.info("sink.json")["url"]

        def resolved_in_console() -> bool:
            view = get_json(f"{sink_url}/console/api/view")
            times = {t["agency_id"]: t for t in view["response_times"]}
            return int(times.get("mairie-35401", {}).get("resolved", 0)) >= 1

        wait_for(resolved_in_console, 90, "the console counting the incident resolved")
        wait_for(lambda: get_json(f"{sink_url}/stats")["status_events"] >= 2, 60,
                 "both statuses in the store")
    finally:
        router.stop()
        sink.stop()


def test_an_action_taken_offline_is_sent_once(hub: Hub) -> None:
    settings, intake, logins = hub
    point = load_territory().municipalities["35401"].geometry.representative_point()
    event = incident("35401", point.y, point.x)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        with Publisher(settings, client_id="test-desk-offline") as publisher:
            publisher.publish(event)
            assert publisher.flush(30).ok
        ours = the_dispatch(settings, event, "mairie-35401")
        with launch_browser() as browser:
            page = browser.new_page(**TABLET)
            log_in(page, intake.url, "voirie-montveille", logins["voirie-montveille"])
            shows(page, f"#ref-{ours}")
            page.check("#select-all")  # every row shown, then none again
            assert page.eval_on_selector_all("input[name=dispatch]", "cs => cs.every(c => c.checked)")
            page.uncheck("#select-all")
            assert page.eval_on_selector_all("input[name=dispatch]", "cs => cs.every(c => !c.checked)")
            page.check(f"#sel-{ours}")
            intake.stop()
            try:
                page.click("#sel-submit")
                page.wait_for_selector("[data-queue]:not([hidden])")
                # The queue is kept per person (the session's subject), like the relays' per login.
                account = AccountStore(settings.state_dir / ACCOUNTS_FILE).store.find("voirie-montveille")
                assert account is not None
                key = f"veille.relais.queue.agence.account:{account.id}"
                assert len(json.loads(page.evaluate(f"localStorage.getItem({json.dumps(key)})"))) == 1
                screenshot(page, "desk-action-queued")
            finally:
                intake.start()
            page.wait_for_function(f"() => JSON.parse(localStorage.getItem({json.dumps(key)})).length === 0",
                                   timeout=90_000)
            time.sleep(6)  # one more round of the queue's timer: nothing is sent again
        statuses(settings, ours, 1)
        # Everything on the topic for that dispatch (waiting for a second one that never comes).
        assert [u["status"] for u in statuses(settings, ours, 2, timeout=5)] == ["acknowledged"]
    finally:
        router.stop()


def test_not_ours_with_a_place_picked_on_the_map(hub: Hub) -> None:
    """*Pas de notre ressort*: the reason, and a corrected place clicked on the map, go out in the
    StatusUpdate (v3) the re-routing reads. On a tablet held upright nothing is wider than the screen."""
    settings, intake, logins = hub
    point = load_territory().municipalities["35401"].geometry.representative_point()
    event = incident("35401", point.y, point.x)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        with Publisher(settings, client_id="test-desk-refuse") as publisher:
            publisher.publish(event)
            assert publisher.flush(30).ok
        ours = the_dispatch(settings, event, "mairie-35401")
        with launch_browser() as browser:
            page = browser.new_page(**TABLET)
            errors = ConsoleErrors(page)
            log_in(page, intake.url, "voirie-montveille", logins["voirie-montveille"])
            shows(page, f"#ref-{ours}")
            page.goto(intake.url + f"/agence/dispatches/{ours}")
            assert page.is_hidden("#one-reason")  # only asked for a refusal
            page.check("#one-status-rejected")
            assert page.is_visible("#one-reason")
            page.select_option("#one-reason", "wrong_location")
            box = page.locator("#map").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
            lat, lon = float(page.input_value("#one-lat")), float(page.input_value("#one-lon"))
            assert 47 < lat < 49 and -3 < lon < 0
            assert axe_violations(page) == []
            screenshot(page, "desk-not-ours")
            page.click("#one-submit")
            page.wait_for_url("**?fait=rejected")
            assert "Pas de notre ressort" in page.inner_text("#status-now")
            page.set_viewport_size({"width": 768, "height": 1024})
            for path in (f"/agence/dispatches/{ours}", "/agence/"):
                page.goto(intake.url + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= 768, path
                # Targets a gloved finger in a van can hit: 44 px at least (checkboxes are 36 px
                # squares in a 44 px row, as on the relays' form).
                small = page.evaluate("""() => Array.from(document.querySelectorAll(
                    'main input:not([type=hidden]), main select, main textarea, main button, ' +
                    'main a.button, .bar a, .bar button, .choice'))
                    .filter(e => e.offsetParent !== null && e.type !== 'checkbox' && e.type !== 'radio')
                    .filter(e => e.getBoundingClientRect().height < 44)
                    .map(e => e.id || e.textContent)""")
                assert small == [], (path, small)
            screenshot(page, "desk-inbox-portrait")
            assert errors.messages == []
        (refusal,) = statuses(settings, ours, 1)
        assert refusal["status"] == "rejected" and refusal["reason"] == "wrong_location"
        assert refusal["corrected_location"] == {"lat": round(lat, 6), "lon": round(lon, 6)}
    finally:
        router.stop()
