"""deploy/prometheus: the config, the rules and their promtool unit tests.

promtool (Debian package ``prometheus``, installed by ``make tools``) does the real checks;
without it those tests are skipped, never failed. The structural checks below need only YAML:
every alert is actionable, every metric a rule reads is one the hub exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import ROOT
from prometheus_client import REGISTRY

import veille.deliver.metrics
import veille.notify.metrics
import veille.producers.metrics
import veille.schemas.registry
import veille.sinks.metrics
import veille.streams.metrics  # noqa: F401  (registers the metrics the rules read)

PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "rules" / "veille.rules.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
README = ROOT / "deploy" / "README.md"

REQUIRED_ALERTS = {"ConsumerLagHigh", "DeadLetterRateHigh", "UnroutableRateHigh", "SinkStalled",
                   "SourceQuarantined",
                   "SchemaRegistryUnreachable",
                   "ProducerDeliveryFailures", "TargetDown",
                   "DispatchUndelivered", "WebhookDisabled"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (`make tools`, or apt-get install prometheus)")
    return path


def _run(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


# --------------------------------------------------------------------------- promtool


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = _run("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule file is found relative to prometheus.yml, as the Prometheus container sees it.
    assert "1 rule files found" in result.stdout


def test_rule_file_is_valid() -> None:
    result = _run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool test file in deploy/prometheus/tests"
    result = _run("test", "rules", *(str(p.relative_to(PROM_DIR)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_promtool_rejects_a_broken_rule_file(tmp_path: Path) -> None:
    text = RULES.read_text()
    good = "sum by (group, topic) (veille_consumer_lag) > 10000"
    assert good in text
    broken = tmp_path / "veille.rules.yml"
    broken.write_text(text.replace(good, "sum by (group, topic (veille_consumer_lag) > 10000"))
    result = _run("check", "rules", str(broken), cwd=tmp_path)
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr).lower()


def test_promtool_unit_tests_catch_a_weakened_threshold(tmp_path: Path) -> None:
    """The unit tests pin behaviour: a rule file with a 10x laxer dead-letter threshold fails them."""
    _promtool()
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert "> 0.05" in text
    (tmp_path / "rules" / "veille.rules.yml").write_text(text.replace("> 0.05", "> 0.5"))
    for test_file in RULE_TESTS:
        shutil.copy(test_file, tmp_path / "tests" / test_file.name)
    result = _run("test", "rules", *(f"tests/{p.name}" for p in RULE_TESTS), cwd=tmp_path)
    assert result.returncode != 0
    assert "DeadLetterRateHigh" in result.stdout + result.stderr


# --------------------------------------------------------------------------- structure (no promtool)


def test_every_required_alert_is_actionable() -> None:
    alerts = _alerts()
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS
    readme = README.read_text()
    anchors = {_slug(m) for m in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)}
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "deploy/README.md", name
        assert anchor in anchors, f"{name}: no section #{anchor} in deploy/README.md"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def _exported_series() -> set[str]:
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count")}
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_rules_read_only_metrics_the_hub_exports() -> None:
    exported = _exported_series()
    used: set[str] = set()
    for rule in _rules():
        # Recording-rule outputs (level:metric:ops) contain colons and are not read back here.
        used.update(re.findall(r"(?<![\w:])(veille_[a-z0-9_]+)(?![\w:])", rule["expr"]))
    assert used, "no veille_* metric found in the rules"
    missing = sorted(used - exported)
    assert missing == [], f"rules read metrics no module defines: {missing}"


def test_scrape_jobs_cover_every_hub_process() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"veille-router", "veille-sink", "veille-intake", "veille-simulator"} <= jobs
    # TargetDown matches the hub's jobs by this prefix.
    target_down = next(a for a in _alerts() if a["alert"] == "TargetDown")
    assert 'job=~"veille-.*"' in target_down["expr"]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
