"""The console in a real headless Chromium, on a running sink (real broker, real chDB) holding
known data: the map shows every municipality, the numbers equal the store's (/indicators),
a filter change updates them and the URL, export.csv has exactly the filtered rows, the annual
report suppresses counts below 5, each body's deliveries show with the undelivered first, the
browser logs no error. Screenshots: test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from browser_helpers import SCREENSHOTS, ConsoleErrors, axe_violations, launch_browser, screenshot
from confluent_kafka import Producer
from console_data import COUNTS, DELIVERY, DELIVERY_ORDER, Known, dataset, receipts, selected
from hub_helpers import HubProcess, hub_settings, wait_for

from veille.territory import load_territory
from veille.topics import Topics

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka


@dataclass
class Hub:
    url: str
    known: list[Known]
    start: date
    end: date
    deliveries: dict[tuple[str, str, str], str]  # (agency, dispatch id, method) -> state now

    def console(self, **params: str) -> str:
        query = {"from": self.start.isoformat(), "to": self.end.isoformat(), **params}
        return f"{self.url}/console/?{urlencode(query)}"


@pytest.fixture(scope="module")
def hub(kafka: KafkaFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    settings = hub_settings(kafka.settings, tmp_path_factory.mktemp("console"), sink_batch_seconds=0.2)
    known, updates, alert = dataset()
    sent, states = receipts(known)
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    try:
        url = sink.info("sink.json")["url"]
        producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all"})
        topics = Topics(settings.topic_prefix)
        for record in [*(k.incident for k in known), *updates, alert]:
            producer.produce(topics.routed, value=record.encode())
        # What `veille deliver run` publishes: one receipt per attempt, keyed by the dispatch id.
        for receipt in sent:
            producer.produce(topics.delivery, key=str(receipt.dispatch_id).encode(), value=receipt.encode())
        assert producer.flush(30) == 0

        def stored() -> bool:
            s = httpx.get(f"{url}/stats", timeout=30).json()
            return (s["incidents"], s["status_events"], s["alerts"], s["delivery_receipts"]) \
                == (len(known), len(updates), 1, len(sent))

        wait_for(stored, 90, "the sink to store the known data")
        today = datetime.now(UTC).date()
        yield Hub(url, known, today - timedelta(days=5), today + timedelta(days=2), states)
    finally:
        assert sink.stop() == 0, sink.log()


@pytest.fixture(scope="module")
def browser(hub: Hub) -> Iterator[Any]:
    with launch_browser() as b:
        yield b


def indicators(hub: Hub, municipalities: list[str]) -> dict[str, Any]:
    q = {"municipalities": ",".join(municipalities), "from": hub.start.isoformat(), "to": hub.end.isoformat()}
    return httpx.get(f"{hub.url}/indicators", params=q, timeout=30).json()


def number(text: str) -> int:
    return int(text.replace("\u202f", "").replace("\u00a0", "").replace(" ", ""))


def open_page(browser: Any, url: str) -> tuple[Any, ConsoleErrors, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR",
                            timezone_id="Europe/Paris")
    errors = ConsoleErrors(page)
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready")
    return page, errors, failed


def table(page: Any, selector: str, key: str) -> dict[str, dict[str, str]]:
    rows = page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [r.dataset." + key + ", Object.fromEntries(Array.from(r.cells)"
        ".filter(c => c.className).map(c => [c.className, c.textContent]))])")
    return {k: v for k, v in rows}


def test_map_and_numbers_equal_the_store(hub: Hub, browser: Any) -> None:
    territory = load_territory()
    page, errors, failed = open_page(browser, hub.console())
    try:
        for code in territory.municipalities:
            assert page.locator(f"#map path.muni-{code}").count() == 1, code
        assert page.locator("#map path.muni").count() == len(territory.municipalities)
        # Grid cells drawn, never for the sensitive category (assault): fewer cells than places.
        assert page.locator("#map path.cell").count() > 0

        ind = indicators(hub, sorted(territory.municipalities))
        assert number(page.text_content("#kpi-reports")) == ind["reports"]["total"] == len(hub.known)
        munis = table(page, "#muni-table", "insee")
        assert {c: number(r["reports"]) for c, r in munis.items() if number(r["reports"])} \
            == ind["reports"]["by_municipality"] == COUNTS
        cross = {r["municipality"]: r for r in ind["cross_boundary"]["by_municipality"]}
        for code, row in munis.items():
            expected = cross.get(code, {"dispatches": 0, "cross_boundary": 0})
            assert (number(row["dispatches"]), number(row["cross"])) \
                == (expected["dispatches"], expected["cross_boundary"]), code
        agencies = table(page, "#agency-table", "agency")
        assert {a: (number(r["dispatches"]), number(r["cross"])) for a, r in agencies.items()} \
            == {r["agency_id"]: (r["dispatches"], r["cross_boundary"])
                for r in ind["cross_boundary"]["by_agency"]}
        # The page's "now" is when it loaded: pass it, so a deadline passing meanwhile changes nothing.
        now = page.evaluate("document.body.dataset.now")
        late = httpx.get(f"{hub.url}/deadlines", timeout=30, params={
            "municipalities": ",".join(sorted(territory.municipalities)), "from": hub.start.isoformat(),
            "to": hub.end.isoformat(), "now": now}).json()
        assert late["now"] == now
        shown = table(page, "#deadline-table", "key")
        assert {k: (number(r["dispatches"]), number(r["not_acknowledged"]), number(r["open_overdue"]))
                for k, r in shown.items()} \
            == {f"{r['agency_id']}|{r['category']}":
                (r["with_deadline"], r["not_acknowledged"], r["open_overdue"])
                for r in late["rows"] if r["with_deadline"]}
        # Every known incident is under a deadline rule of the example territory (the last matches all).
        assert sum(r["with_deadline"] for r in late["rows"]) \
            == sum(len(k.incident.dispatches) for k in hub.known)
        # Response times: the same agencies and counts as the indicator, for the same cell.
        times = table(page, "#times-table", "agency")
        assert {a: (number(r["dispatches"]), number(r["acknowledged"]), number(r["resolved"]))
                for a, r in times.items()} \
            == {r["agency_id"]: (r["incidents"], r["acknowledged"], r["resolved"])
                for r in ind["response_times"]}
        assert page.locator("#alert-table tbody tr").count() == 1
        # The alert is in force: its row says so and its CAP area is drawn on the map.
        assert page.locator("#alert-table tbody tr[data-state=active]").count() == 1
        assert page.locator("#map path.alert-area").count() == 1
        assert page.locator("#chart-category .uplot").count() == 1
        assert page.locator("#chart-channel .uplot").count() == 1
        screenshot(page, "console-overview")
        assert axe_violations(page) == []
        assert errors.messages == [] and failed == []
    finally:
        page.close()


def test_each_body_shows_its_deliveries_the_undelivered_first(hub: Hub, browser: Any) -> None:
    territory = load_territory()
    page, errors, failed = open_page(browser, hub.console())
    try:
        ind = indicators(hub, sorted(territory.municipalities))["delivery"]
        undelivered = sum(st == "undelivered" for st in hub.deliveries.values())
        assert number(page.text_content("#kpi-undelivered")) == undelivered == 1
        sections = page.locator("#delivery-bodies section.delivery-body")
        # A section per body with a push method; the one with an undelivered dispatch first, then
        # the failing ones (the oldest first).
        assert tuple(sections.evaluate_all("s => s.map(e => e.dataset.agency)")) == DELIVERY_ORDER
        for agency, (method, _trouble) in DELIVERY.items():
            section = page.locator(f"section.delivery-body[data-agency='{agency}']")
            name = territory.agencies[agency].name
            assert (section.locator("h3").text_content() or "").startswith(name)
            mine = [st for (a, _, _), st in hub.deliveries.items() if a == agency]
            # transmis / en attente / en échec depuis …, equal to the store's indicator.
            (row,) = [r for r in ind["by_agency_method"] if r["agency_id"] == agency]
            assert number(section.locator(".delivery-summary .delivered").text_content().split(":")[1]) \
                == mine.count("delivered") == row["delivered"]
            assert number(section.locator(".delivery-summary .pending").text_content().split(":")[1]) \
                == mine.count("pending") == row["pending"]
            failing = section.locator(".delivery-summary .failing").text_content()
            assert failing is not None
            assert number(failing.split(":")[1].split("depuis")[0]) == row["failed"] + row["disabled"] \
                + row["undelivered"] == sum(mine.count(s) for s in ("failed", "disabled", "undelivered"))
            assert ("depuis" in failing) == (row["failing_since"] is not None)
            methods = table(page, f"section.delivery-body[data-agency='{agency}'] table.delivery-methods",
                            "method")
            assert list(methods) == [method]
            assert number(methods[method]["dispatches"]) == len(mine) == row["dispatches"]
            stuck = section.locator("table.delivery-stuck tbody tr")
            states = stuck.evaluate_all("rs => rs.map(r => [r.dataset.dispatch, r.dataset.state])")
            assert [tuple(s) for s in states] == [(d, st) for (a, d, _), st in hub.deliveries.items()
                                                  if a == agency and st != "delivered"]
        # The undelivered dispatch: how long, which method, the last reply.
        first = page.locator("section.delivery-body").first
        assert "non remis depuis" in (first.locator("h3 .badge").text_content() or "")
        row_cells = first.locator("table.delivery-stuck tbody tr[data-state=undelivered] td")
        cells = row_cells.evaluate_all("cs => Object.fromEntries(cs.map(c => [c.className, c.textContent]))")
        assert cells["method"] == "Webhook" and cells["state"] == "Non remis" and cells["attempts"] == "3"
        assert cells["reply"] == "503 Service Unavailable" and cells["since"].endswith(("h", "j", "min"))
        # Another agency filter: that body's section only.
        page.select_option("#f-agency", "pm-35401")
        page.wait_for_function("(document.body.dataset.ready || '').includes('agency')")
        assert page.locator("section.delivery-body").evaluate_all("s => s.map(e => e.dataset.agency)") \
            == ["pm-35401"]
        page.select_option("#f-agency", "")
        page.wait_for_function("!(document.body.dataset.ready || 'agency').includes('agency')")
        delivery = page.locator("section[aria-labelledby=h-delivery]")
        delivery.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        delivery.screenshot(path=str(SCREENSHOTS / "console-delivery.png"))
        assert axe_violations(page) == []
        assert errors.messages == [] and failed == []
    finally:
        page.close()


def test_filter_change_updates_numbers_url_and_export(hub: Hub, browser: Any) -> None:
    page, errors, failed = open_page(browser, hub.console(municipalities="35401,35402"))
    try:
        ind = indicators(hub, ["35401", "35402"])
        assert number(page.text_content("#kpi-reports")) == ind["reports"]["total"] == 19
        before = page.evaluate("document.body.dataset.ready")
        page.select_option("#f-category", "flood")
        page.wait_for_function(
            f"document.body.dataset.ready && document.body.dataset.ready !== {before!r}")
        want = selected(hub.known, municipalities=("35401", "35402"), category="flood")
        assert number(page.text_content("#kpi-reports")) == len(want) \
            == ind["reports"]["by_category"]["flood"]
        query = parse_qs(urlparse(page.url).query)
        assert query["category"] == ["flood"] and query["municipalities"] == ["35401,35402"]
        page.select_option("#f-status", "open")
        page.wait_for_function("(document.body.dataset.ready || '').includes('status')")
        want = selected(hub.known, municipalities=("35401", "35402"), category="flood", status="open")
        assert number(page.text_content("#kpi-reports")) == len(want)
        screenshot(page, "console-filtered")

        # The export link carries the page's filter: exactly the same incidents, nothing else.
        href = page.get_attribute("#export", "href")
        assert href is not None and "category=flood" in href and "status=open" in href
        body = httpx.get(f"{hub.url}/console/{href}", timeout=30)
        assert body.headers["content-type"].startswith("text/csv")
        assert body.content.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(body.content.decode("utf-8-sig")), delimiter=";"))
        assert sorted(r["identifiant"] for r in rows) == sorted(str(k.incident.id) for k in want)

        # A shared link reopens the same view.
        page.goto(page.url)
        page.wait_for_function("document.body.dataset.ready")
        assert page.input_value("#f-category") == "flood" and page.input_value("#f-status") == "open"
        assert number(page.text_content("#kpi-reports")) == len(want)
        assert errors.messages == [] and failed == []
    finally:
        page.close()


@pytest.mark.parametrize("params", [
    {}, {"agency": "sdis35"}, {"channel": "phone", "status": "closed"}, {"municipalities": "35403"},
    {"category": "assault", "status": "new"},
])
def test_export_has_exactly_the_filtered_rows(hub: Hub, params: dict[str, str]) -> None:
    q = {"from": hub.start.isoformat(), "to": hub.end.isoformat(), **params}
    resp = httpx.get(f"{hub.url}/console/export.csv", params=q, timeout=30)
    assert resp.status_code == 200 and resp.content[:3] == b"\xef\xbb\xbf"
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig")), delimiter=";"))
    munis = tuple(params["municipalities"].split(",")) if "municipalities" in params else ()
    others = {k: v for k, v in params.items() if k != "municipalities"}
    want = selected(hub.known, municipalities=munis, **others)
    assert sorted(r["identifiant"] for r in rows) == sorted(str(k.incident.id) for k in want)
    by_id = {str(k.incident.id): k for k in hub.known}
    exact = {(k.incident.location.lat, k.incident.location.lon) for k in hub.known if k.incident.location}
    for r in rows:
        k = by_id[r["identifiant"]]
        assert r["etat"] == k.status and r["categorie"] == k.incident.category.value
        if k.incident.category.value == "assault":
            assert r["maille_lat"] == r["maille_lon"] == ""  # sensitive: no position at all
        else:
            cell = (float(r["maille_lat"]), float(r["maille_lon"]))
            assert cell not in exact
            assert abs(cell[0] - k.incident.location.lat) <= 0.005
            assert abs(cell[1] - k.incident.location.lon) <= 0.005


def test_annual_report_suppresses_counts_below_five(hub: Hub, browser: Any) -> None:
    year = datetime.now(UTC).year
    page, errors, _failed = open_page(browser, hub.console())
    try:
        page.select_option("#r-muni", "35403")
        page.fill("#r-year", str(year))
        page.dispatch_event("#r-year", "change")
        page.click("#report-link")
        page.wait_for_selector("#report-total")
        assert COUNTS["35403"] < 5
        assert page.text_content("#report-total") == "< 5"
        cells = page.eval_on_selector_all(
            "#report-categories td:nth-child(2), #report-months td:nth-child(2)",
            "cs => cs.map(c => c.textContent)")
        assert cells and set(cells) == {"< 5"}
        screenshot(page, "console-report-small-town")
        assert axe_violations(page) == [] and errors.messages == []
    finally:
        page.close()
    big = httpx.get(f"{hub.url}/console/report", params={"municipality": "35401", "year": year}).text
    assert '<strong id="report-total">12</strong>' in big
    # 12 incidents over 4 categories, 3 each: every category count is suppressed, the total is not.
    cats = Counter(k.incident.category.value for k in hub.known if k.incident.municipality == "35401")
    assert all(n < 5 for n in cats.values()) and big.count("<td>&lt; 5</td>") >= len(cats)
    unknown = httpx.get(f"{hub.url}/console/report", params={"municipality": "99999", "year": year})
    assert unknown.status_code == 400


def test_veille_indicators_prints_the_deadlines(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    from veille import cli

    args = ["indicators", "--url", hub.url, "--municipalities", "35401,35402",
            "--from", hub.start.isoformat(), "--to", hub.end.isoformat()]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reports"]["total"] == 19
    assert {r["agency_id"] for r in result["deadlines"]["rows"]} >= {"pm-35401", "sdis35"}
    assert cli.main(args) == 0
    assert "Response deadlines per agency and category" in capsys.readouterr().out


def test_console_routes_answer_and_reject_bad_filters(hub: Hub) -> None:
    assert httpx.get(f"{hub.url}/healthz").json() == {"status": "ok"}
    assert "veille_sink_write_failures_total" in httpx.get(f"{hub.url}/metrics").text
    bad = httpx.get(f"{hub.url}/console/api/view", params={"category": "nope"})
    assert bad.status_code == 400 and "category" in bad.json()["error"]
    backwards = {"from": "2026-02-01", "to": "2026-01-01"}
    assert httpx.get(f"{hub.url}/console/api/view", params=backwards).status_code == 400
    assert httpx.get(f"{hub.url}/nowhere").status_code == 404
    started = time.monotonic()
    assert httpx.get(f"{hub.url}/console/api/view", timeout=30).status_code == 200
    assert time.monotonic() - started < 10


def test_the_console_serves_cap_feeds_per_municipality(hub: Hub) -> None:
    """Agencies' CAP readers subscribe under the console's URL: one Atom feed per municipality."""
    from defusedxml.ElementTree import fromstring

    from veille.producers.cap_xml import parse_cap

    feed = httpx.get(f"{hub.url}/console/cap/feed.atom", params={"municipality": "35401"}, timeout=30)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    (alert,) = parse_cap(feed.content)
    assert alert["infos"][0]["headline"] == "Vigilance crues sur la Veille"
    links = [e.get("href") for e in fromstring(feed.content).iter("{http://www.w3.org/2005/Atom}link")]
    alert_links = [h for h in links if h and "/console/cap/alerts/" in h]
    assert len(alert_links) == 1 and alert_links[0].startswith(hub.url)
    one = httpx.get(alert_links[0], timeout=30)
    assert one.status_code == 200 and parse_cap(one.content) == [alert]
    # A town the alert does not cover has an empty feed; a bad code is refused.
    empty = httpx.get(f"{hub.url}/console/cap/feed.atom", params={"municipality": "35406"}, timeout=30)
    assert empty.status_code == 200
    assert list(fromstring(empty.content).iter("{http://www.w3.org/2005/Atom}entry")) == []
    bad = httpx.get(f"{hub.url}/console/cap/feed.atom", params={"municipality": "x"}, timeout=30)
    assert bad.status_code == 400
