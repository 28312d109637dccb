"""The relays' form in a real headless Chromium, on a real `veille intake serve` and broker.

Keyboard only: log in, find the category by a resident's word, describe, place the report on
the map (Enter puts it at the map's centre), send, read the reference; the incident is on
Kafka with the relay's channel and municipality, and the store (router + sink running) counts
it. A relay cannot place a report in another town. With the intake stopped, the report is
kept in the browser and sent once when the intake is back. axe-core finds nothing on the
login page, the form and the form with its errors.
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
from veille.producers.relay.accounts import ACCOUNTS_FILE, AccountStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Channel, EventType, Incident, IncidentStatus, RoutedIncident, StatusUpdate
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

TABLET = {"viewport": {"width": 1024, "height": 1366}, "locale": "fr-FR", "timezone_id": "Europe/Paris"}


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


Hub = tuple[Settings, Intake, dict[str, str]]  # settings, the running intake, login -> password


@pytest.fixture(scope="module")
def hub(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    settings = hub_settings(kafka.settings, tmp_path_factory.mktemp("relay-browser"), sink_batch_seconds=0.3)
    store = AccountStore(settings.state_dir / ACCOUNTS_FILE)
    logins: dict[str, str] = {}
    for login, kind in (("accueil-35401", "town_hall_desk"), ("standard-35401", "phone")):
        _, logins[login] = store.issue(f"Relais {login}", kind=kind, municipalities=["35401"], login=login)
    intake = Intake(settings)
    intake.start()
    try:
        yield settings, intake, logins
    finally:
        intake.stop()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core loaded from the intake itself: the pages' Content-Security-Policy forbids the
    inline script tag that browser_helpers.axe_violations adds (and must stay on under test)."""
    page.add_script_tag(url="/relais/static/vendor/axe.min.js")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def tab_to(page: Any, element_id: str, limit: int = 60) -> None:
    """Press Tab until ``element_id`` has the focus: the only way a keyboard user gets there."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} never reached with Tab")


def log_in(page: Any, url: str, login: str, password: str) -> None:
    page.goto(url + "/relais/")
    assert page.url.endswith("/relais/connexion")
    tab_to(page, "login")
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/relais/")
    page.wait_for_selector("#map path.leaflet-interactive")


def incidents_of(settings: Settings, ids: set[str], timeout: float = 20) -> list[Incident]:
    topic = Topics(settings.topic_prefix).intake("35401")
    records = read_topics(settings, [topic], timeout=timeout, until=lambda rs: len(
        [r for _, r in rs if str(r.value["id"]) in ids]) >= len(ids))
    return [Incident.from_avro(r.value) for _, r in records if str(r.value["id"]) in ids]


def dispatch_status(settings: Settings, incident_id: str, status: IncidentStatus) -> None:
    """The first agency the router dispatched the incident to posts ``status`` about it."""
    routed = read_topics(settings, [Topics(settings.topic_prefix).routed], timeout=60, until=lambda rs: any(
        r.record_type == "RoutedIncident" and str(r.value["id"]) == incident_id for _, r in rs))
    (record,) = [RoutedIncident.from_avro(r.value) for _, r in routed
                 if r.record_type == "RoutedIncident" and str(r.value["id"]) == incident_id]
    target = record.dispatches[0]
    ref = dispatch_id(settings.dispatch_key.get_secret_value().encode(), EventType.incident, incident_id,
                      target.agency_id, target.service)
    with Publisher(settings, client_id="test-agency") as publisher:
        publisher.publish(StatusUpdate(id=uuid.uuid4(), incident_id=uuid.UUID(incident_id),
                                       agency_id=target.agency_id, dispatch_id=ref, status=status,
                                       at=datetime.now(UTC)))
        assert publisher.flush(30).ok


def test_keyboard_only_report_reaches_kafka_and_the_store(hub: Hub) -> None:
    settings, intake, logins = hub
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        with launch_browser() as browser:
            page = browser.new_page(**TABLET)
            errors = ConsoleErrors(page)
            page.goto(intake.url + "/relais/")
            assert axe_violations(page) == []
            screenshot(page, "relay-login")
            log_in(page, intake.url, "accueil-35401", logins["accueil-35401"])
            assert axe_violations(page) == []
            tab_to(page, "category-search")
            page.keyboard.type("lampadaire")
            assert page.eval_on_selector("#category", "s => s.value") == "broken_streetlight"
            tab_to(page, "description")
            page.keyboard.type("Lampadaire éteint devant l'école, signalé par une habitante au guichet")
            tab_to(page, "map")
            page.keyboard.press("Enter")  # places the report at the map's centre
            assert "Point placé à Montveille" in page.inner_text("#place-status")
            tab_to(page, "submit")
            screenshot(page, "relay-form-filled")
            page.keyboard.press("Enter")
            page.wait_for_selector("#sent:not([hidden]) .reference")
            reference = page.inner_text("#sent .reference").rsplit(" ", 1)[1]
            screenshot(page, "relay-form-sent")
            assert page.eval_on_selector("#description", "t => t.value") == ""  # ready for the next one
            history = page.inner_text("#history")
            assert reference in history
            assert errors.messages == []
            topic = Topics(settings.topic_prefix).intake("35401")
            records = read_topics(settings, [topic], timeout=20, until=lambda rs: len(rs) >= 1)
            (incident,) = [Incident.from_avro(r.value) for _, r in records]
            assert str(incident.id).replace("-", "")[:8].upper() == reference.replace("-", "")
            assert incident.channel == Channel.town_hall_desk and incident.municipality == "35401"
            assert incident.category.value == "broken_streetlight" and incident.location is not None
            # The store shows it, counted under the desk's channel.
            sink_url = sink.info("sink.json")["url"]
            day = datetime.now(UTC).date()
            # Indicators count by Paris dates, `to` excluded: after 23:00 UTC "today" there is day + 1.
            query = (f"{sink_url}/indicators?municipalities=35401"
                     f"&from={day - timedelta(days=1)}&to={day + timedelta(days=2)}")
            wait_for(lambda: get_json(query)["reports"]["total"] >= 1, 90, "the report in the store")
            assert get_json(query)["reports"]["by_channel"] == {"town_hall_desk": 1}
            # The agency it was dispatched to says it is on it: the relay sees it by its reference.
            dispatch_status(settings, str(incident.id), IncidentStatus.dispatched)
            page.goto(intake.url + "/relais/suivi")
            tab_to(page, "reference")
            page.keyboard.type(reference)
            page.keyboard.press("Enter")

            def shows_dispatched() -> bool:
                if "Transmis au service compétent" in page.inner_text("main"):
                    return True
                page.reload()  # the read model follows the routed topic: ask again
                return False

            wait_for(shows_dispatched, 60, "the dispatched status on the status page")
            assert axe_violations(page) == []
            screenshot(page, "relay-status")
    finally:
        router.stop()
        sink.stop()


def test_a_relay_cannot_place_a_report_in_another_town(hub: Hub) -> None:
    settings, intake, logins = hub
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        errors = ConsoleErrors(page)
        log_in(page, intake.url, "standard-35401", logins["standard-35401"])
        options = page.eval_on_selector_all("#municipality option", "os => os.map(o => o.value)")
        assert options == ["35401"]
        # Trémel-en-Lande (35406) on the map: refused next to the map, nothing placed.
        box = page.locator("#map").bounding_box()
        point = page.evaluate("""([lat, lon]) => {
            const map = window.relayMap; map.setView([lat, lon], map.getZoom(), {animate: false});
            const p = map.latLngToContainerPoint([lat, lon]);
            return [p.x, p.y]; }""", [48.046, -1.5595])
        page.mouse.click(box["x"] + point[0], box["y"] + point[1])
        assert "Trémel-en-Lande" in page.inner_text("#place-error")
        assert page.eval_on_selector("#lat", "i => i.value") == ""
        # A forged request for 35406 is refused by the intake all the same.
        status = page.evaluate("""async () => {
            const body = new URLSearchParams(new FormData(document.getElementById('report')));
            body.set('municipality', '35406'); body.set('category', 'graffiti'); body.set('description', 'x');
            const r = await fetch(document.getElementById('report').action,
                                  {method: 'POST', body, headers: {Accept: 'application/json'}});
            return [r.status, (await r.json()).code]; }""")
        assert status == [403, "municipality_mismatch"]
        # Errors are shown next to each field, in French, and axe finds nothing wrong there either.
        tab_to(page, "submit")
        page.keyboard.press("Enter")
        page.wait_for_selector("#summary:not([hidden])")
        assert page.inner_text("#description-error") == "Ce champ est obligatoire."
        assert page.inner_text("#category-error") == "Choisissez un type de problème dans la liste."
        assert axe_violations(page) == []
        screenshot(page, "relay-form-errors")
        # On a phone held upright: one column, nothing wider than the screen, targets >= 44 px.
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        small = page.evaluate("""() => Array.from(document.querySelectorAll(
            'main input:not([type=hidden]), main select, main textarea, main button, .bar a, .bar button'))
            .filter(e => e.offsetParent !== null)
            .filter(e => e.getBoundingClientRect().height < 44 && e.type !== 'checkbox')
            .map(e => e.id || e.textContent)""")
        assert small == []
        screenshot(page, "relay-form-phone")
        # Only the refusals themselves were logged (Chromium logs every 4xx answer it receives).
        assert all("403" in m or "422" in m for m in errors.messages), errors.messages
    topics = Topics(settings.topic_prefix)
    assert read_topics(settings, [topics.intake("35406")], timeout=3, until=lambda rs: False) == []


def test_offline_report_is_kept_and_sent_once_when_the_intake_is_back(
        hub: Hub) -> None:
    settings, intake, logins = hub
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        log_in(page, intake.url, "standard-35401", logins["standard-35401"])
        page.select_option("#category", "fallen_tree")
        page.fill("#description", "Arbre tombé en travers du chemin du Moulin")
        report_id = page.eval_on_selector("#report_id", "i => i.value")
        intake.stop()
        try:
            page.click("#submit")
            page.wait_for_selector("#queue:not([hidden])")
            assert "gardé sur cet appareil" in page.inner_text("#sent")
            queued = json.loads(page.evaluate("localStorage.getItem('veille.relais.queue.standard-35401')"))
            assert [q["id"] for q in queued] == [report_id]
            screenshot(page, "relay-form-queued")
        finally:
            intake.start()
        page.wait_for_function(
            "() => JSON.parse(localStorage.getItem('veille.relais.queue.standard-35401')).length === 0",
            timeout=30_000)
        assert "Signalement gardé envoyé" in page.inner_text("#queue")
        time.sleep(6)  # one more round of the queue's timer: nothing is sent again
    got = incidents_of(settings, {report_id})
    assert len(got) == 1 and got[0].channel == Channel.phone and got[0].category.value == "fallen_tree"
    topic = Topics(settings.topic_prefix).intake("35401")
    every = read_topics(settings, [topic], timeout=5, until=lambda rs: False)
    assert [str(r.value["id"]) for _, r in every].count(report_id) == 1


def _options(page: Any) -> list[str]:
    """The types the list offers (in the DOM: what every phone's and tablet's picker shows)."""
    return list(page.eval_on_selector_all("#category option", "os => os.map(o => o.value).filter(v => v)"))


def test_the_category_search_narrows_the_list(hub: Hub) -> None:
    _, intake, logins = hub
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        errors = ConsoleErrors(page)
        log_in(page, intake.url, "accueil-35401", logins["accueil-35401"])
        assert len(_options(page)) == 27  # every type before a search
        tab_to(page, "category-search")
        page.keyboard.type("lampadaire")
        assert _options(page) == ["broken_streetlight"]
        assert page.eval_on_selector("#category", "s => s.value") == "broken_streetlight"
        assert page.inner_text("#category-count") == \
            "1 type(s) sur 27 correspondent : choisissez dans la liste ci-dessous."
        screenshot(page, "relay-search-lampadaire")
        assert axe_violations(page) == []
        for typed, expected in (("ÉCLAIRAGE", ["broken_streetlight"]),  # case and accents
                                ("Lampadaires", ["broken_streetlight"]),  # a plural
                                ("inondation", None), ("tag", None)):
            page.fill("#category-search", typed)
            found = _options(page)
            assert 1 <= len(found) < 27, (typed, found)
            if expected is not None:
                assert found == expected, (typed, found)
        page.fill("#category-search", "zzzz")
        assert _options(page) == ["other"]  # nothing matches: "Autre signalement" is still offered
        assert "Aucun type ne correspond" in page.inner_text("#category-count")
        page.fill("#category-search", "")
        assert len(_options(page)) == 27
        assert errors.messages == []


def test_the_photo_field_sends_a_photo_that_arrives_stripped(hub: Hub) -> None:
    import hashlib
    import io

    import exifread
    from photo_helpers import camera_jpeg, jpeg_with_zip
    from PIL import ExifTags, Image

    settings, intake, logins = hub
    original = camera_jpeg()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # it has a position
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        errors = ConsoleErrors(page)
        log_in(page, intake.url, "accueil-35401", logins["accueil-35401"])
        page.fill("#category-search", "avaloir")
        page.fill("#description", "Avaloir bouché rue des Lavoirs, photo prise par l'habitant")
        # A hostile file first: a JPEG with a ZIP appended, named as a photo.
        page.set_input_files("#photo", files=[{"name": "photo.jpg", "mimeType": "image/jpeg",
                                               "buffer": jpeg_with_zip()}])
        page.wait_for_selector("#photo-preview:not([hidden])")
        page.click("#submit")
        page.wait_for_selector("#photo-error:not([hidden])")
        assert "archive ZIP" in page.inner_text("#photo-error")
        assert axe_violations(page) == []
        screenshot(page, "relay-photo-refused")
        # Then the real photo: previewed, sent, kept without its metadata.
        page.set_input_files("#photo", files=[{"name": "IMG_2041.jpg", "mimeType": "image/jpeg",
                                               "buffer": original}])
        page.wait_for_selector("#photo-preview:not([hidden])")
        assert "IMG_2041.jpg" in page.inner_text("#photo-status")
        assert axe_violations(page) == []
        screenshot(page, "relay-photo-preview")
        report_id = page.eval_on_selector("#report_id", "i => i.value")
        page.click("#submit")
        page.wait_for_selector("#sent:not([hidden]) .reference")
        assert page.is_hidden("#photo-preview")  # the form is ready for the next report
        assert all("422" in m for m in errors.messages), errors.messages
    (incident,) = incidents_of(settings, {report_id})
    assert incident.category.value == "blocked_drain" and len(incident.photos) == 1
    digest = incident.photos[0].sha256
    kept = (settings.state_dir / "photos" / "photos" / f"{digest}.jpg").read_bytes()
    assert hashlib.sha256(kept).hexdigest() == digest
    image = Image.open(io.BytesIO(kept))
    assert image.format == "JPEG" and image.size == (800, 600)
    assert len(image.getexif()) == 0 and exifread.process_file(io.BytesIO(kept), details=False) == {}
    assert b"SN-0042-SECRET" not in kept and kept != original
    refs = [p.name for p in (settings.state_dir / "photos" / "refs" / str(incident.id)).iterdir()]
    assert refs == [digest]


def test_a_photo_kept_offline_is_sent_with_its_report_when_the_intake_is_back(hub: Hub) -> None:
    from photo_helpers import camera_jpeg

    settings, intake, logins = hub
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        log_in(page, intake.url, "standard-35401", logins["standard-35401"])
        page.select_option("#category", "illegal_dumping")
        page.fill("#description", "Dépôt sauvage derrière le gymnase, photo jointe")
        page.set_input_files("#photo", files=[{"name": "depot.jpg", "mimeType": "image/jpeg",
                                               "buffer": camera_jpeg(color=(90, 60, 20))}])
        page.wait_for_selector("#photo-preview:not([hidden])")
        report_id = page.eval_on_selector("#report_id", "i => i.value")
        intake.stop()
        try:
            page.click("#submit")
            page.wait_for_selector("#queue:not([hidden])")
            assert "La photo est gardée avec lui et partira en même temps." in page.inner_text("#sent")
            queued = json.loads(page.evaluate("localStorage.getItem('veille.relais.queue.standard-35401')"))
            assert [q["id"] for q in queued] == [report_id]
            assert queued[0]["photo"]["dataUrl"].startswith("data:image/jpeg;base64,")
            screenshot(page, "relay-photo-queued")
        finally:
            intake.start()
        page.wait_for_function(
            "() => JSON.parse(localStorage.getItem('veille.relais.queue.standard-35401')).length === 0",
            timeout=30_000)
    (incident,) = incidents_of(settings, {report_id})
    assert incident.category.value == "illegal_dumping" and len(incident.photos) == 1
    assert (settings.state_dir / "photos" / "photos" / f"{incident.photos[0].sha256}.jpg").exists()
