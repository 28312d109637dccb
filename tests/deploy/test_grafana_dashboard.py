"""deploy/grafana's ops dashboard against a real Prometheus server (Debian's ``prometheus``)
scraping a running hub (router and sink subprocesses on the session broker, this process as the
publisher): every panel's query, evaluated through Prometheus' HTTP API, must return data."""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, wait_for
from paths import ROOT

from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.telemetry import serve_metrics
from veille.territory import load_territory
from veille.topics import Topics

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "veille-ops.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
# Grafana's $__rate_interval is at least four scrape intervals; 1 s scrapes here.
RATE_INTERVAL = "30s"


def dashboard_targets() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_dashboard_is_provisioned_on_the_compose_prometheus() -> None:
    import yaml

    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "veille-ops" and len(dash["panels"]) >= 9
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    datasource = datasources["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]} == {datasource["uid"]}
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose["volumes"]
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "veille.yml").read_text())["providers"][0]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(kafka: KafkaFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("no prometheus server on PATH (make tools installs Debian's prometheus)")
    tmp = tmp_path_factory.mktemp("grafana")
    settings = hub_settings(kafka.settings, tmp / "hub", sink_batch_seconds=0.2)
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    server = None
    prom: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    publisher: threading.Thread | None = None
    try:
        sink_url = sink.info("sink.json")["url"]
        router_metrics = router.info("router.json", timeout=120)["metrics"]
        server, producer_port = serve_metrics(0, "127.0.0.1")
        targets = {"veille-router": router_metrics.split("//")[1].split("/")[0],
                   "veille-sink": sink_url.split("//")[1], "veille-producer": f"127.0.0.1:{producer_port}"}
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                     for job, target in targets.items()]}
        (tmp / "prometheus.yml").write_text(json.dumps(config))
        port = _free_port()
        log = (tmp / "prometheus.log").open("wb")
        prom = subprocess.Popen([exe, f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def targets_up() -> bool:
            try:
                active = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            return len(active) == 3 and all(t["health"] == "up" for t in active)

        wait_for(targets_up, 60, "Prometheus to scrape the router, the sink and the publisher")

        # Traffic: the simulator's stream through the SDK, and one undecodable message the router
        # dead-letters (so the dead-letter panel has a reason to show).
        territory = load_territory(settings.territory_dir)
        sim = Simulator(territory, seed=11, start=datetime.now(UTC) - span_for(300))
        raw = Producer(settings.kafka_client_config())
        raw.produce(Topics(settings.topic_prefix).intake(sorted(territory.municipalities)[0]),
                    value=b"\x00garbage")
        # A flood of bytes naming nobody on the shared status topic: the source "unattributed"
        # is quarantined (the ops page lists it).
        for i in range(300):
            raw.produce(Topics(settings.topic_prefix).status, value=b"\x00flood %d" % i)
        assert raw.flush(30) == 0

        def publish() -> None:
            # A steady trickle while the queries run: rates and latency quantiles need recent samples.
            # The status flood goes on, a message a second: the quarantine lasts while it does.
            with Publisher(settings, client_id="grafana-test") as pub:
                for n, event in enumerate(sim.events(100_000)):
                    if stop.is_set():
                        break
                    pub.publish(event)
                    pub.poll(0)
                    if n % 20 == 0:
                        raw.produce(Topics(settings.topic_prefix).status, value=b"\x00flood")
                        raw.poll(0)
                    time.sleep(0.05)
                pub.flush(30)
                raw.flush(30)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        stats = f"{sink_url}/stats"
        wait_for(lambda: httpx.get(stats, timeout=10).json()["incidents"] > 0, 90,
                 "the sink to store incidents")
        yield url
    finally:
        stop.set()
        if publisher is not None:
            publisher.join(60)
        if prom is not None:
            prom.terminate()
            prom.wait(30)
        if server is not None:
            server.shutdown()
        router.stop()
        sink.stop()


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}/api/v1/query", params={"query": expr.replace("$__rate_interval", RATE_INTERVAL)},
                     timeout=10)
    body = resp.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_every_panel_query_returns_data(prometheus: str) -> None:
    targets = dashboard_targets()
    missing: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        missing = [f"{title}: {expr}" for title, expr in targets
                   if not _has_data(_query(prometheus, expr))]
        if not missing:
            break
        time.sleep(2)
    assert missing == []
    # The names the queries use are names the hub exports (a typo would hide behind `or vector(0)`).
    exported = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    metadata = httpx.get(f"{prometheus}/api/v1/metadata", timeout=10).json()["data"]
    used = {m for _t, e in targets for m in re.findall(r"\b(veille_[a-z_]+|up)\b", e)}
    assert sorted(m for m in used if m not in exported and m.removesuffix("_bucket") not in metadata) == []
    # Real values behind the panels: a dead letter by reason, lag per router group, brokers up.
    reasons = _query(prometheus, "sum by (reason) (veille_router_dead_lettered_total)")
    assert any(r["metric"].get("reason") for r in reasons)
    assert any(r["metric"].get("group") for r in _query(prometheus, "sum by (group) (veille_consumer_lag)"))
    assert float(_query(prometheus, "min(veille_kafka_brokers_up{job=\"veille-sink\"})")[0]["value"][1]) >= 1


def test_ops_page_shows_dead_letters_over_time(prometheus: str, tmp_path: Path) -> None:
    from browser_helpers import ConsoleErrors, axe_violations, launch_browser, screenshot
    from sink_helpers import chdb_store

    from veille.reads.console.access import Credentials
    from veille.reads.service import serve

    with chdb_store(tmp_path / "chdb") as store:
        server = serve(store, 0, credentials=Credentials(), prometheus_url=prometheus)
        unconfigured = serve(store, 0, credentials=Credentials(), prometheus_url="")
        try:
            def ops() -> dict[str, Any]:
                body: dict[str, Any] = httpx.get(f"{server.url}/console/api/ops", params={"hours": 1},
                                                 timeout=30).json()
                return body

            wait_for(lambda: bool(ops()["totals"]["router_dead_letters"]) and bool(ops()["quarantined_now"]),
                     30, "the dead letters and the quarantine in Prometheus")
            data = ops()
            router = data["totals"]["router_dead_letters"]
            assert router and sum(router.values()) >= 1  # the garbage message, counted from its first
            assert set(data["totals"]["unroutable"]) == {"total"}
            assert len(data["timestamps"]) == len(data["unroutable"]["total"]) == 61
            assert httpx.get(f"{unconfigured.url}/console/api/ops").status_code == 503
            assert httpx.get(f"{server.url}/console/api/ops", params={"hours": "x"}).status_code == 400
            with launch_browser() as browser:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                errors = ConsoleErrors(page)
                page.goto(f"{server.url}/console/ops?hours=6")
                page.wait_for_function("document.body.dataset.ready === '6'")
                reasons = page.eval_on_selector_all("#ops-totals tr[data-source=router_dead_letters]",
                                                    "rows => rows.map(r => r.dataset.reason)")
                assert sorted(reasons) == sorted(router)
                assert page.locator("#chart-router .uplot").count() == 1
                # The flood on the status topic: listed with its count, quarantined now.
                assert data["totals"]["quarantined"].get("unattributed", 0) >= 200
                assert "unattributed" in data["quarantined_now"]
                cells = page.locator("#ops-quarantine tr[data-source=unattributed] td").all_inner_texts()
                assert cells[0] == "unattributed" and cells[2] == "oui"
                assert page.locator("#ops-quarantine-none").is_hidden()
                screenshot(page, "console-ops")
                assert axe_violations(page) == [] and errors.messages == []
        finally:
            for s in (server, unconfigured):
                s.shutdown()
                s.server_close()
