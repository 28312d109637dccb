"""deploy/: the compose stack, the image and the Kubernetes manifests, checked as data.

Neither Docker nor Kubernetes runs here, so these tests read the files and check that they
agree with each other and with the code: every hub process reaches the Kafka service on a
listener it advertises, every VEILLE_* variable is a real setting, every scrape target is a
port some service serves, images are pinned.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from paths import ROOT

from veille.config import Settings
from veille.deliver.settings import DeliverySettings
from veille.notify.settings import NotifySettings
from veille.pcs.settings import PcsSettings
from veille.photos.settings import PhotoSettings

DEPLOY = ROOT / "deploy"
HUB_SERVICES = {"topics-init", "router", "escalations", "grouping", "sink", "intake", "simulator", "deliver",
                "notify"}
# The hub's settings, the deployment's side of delivery (veille.deliver.settings), photos, notifier.
SETTINGS_ENV = ({f"VEILLE_{name.upper()}" for name in Settings.model_fields}
                | {f"VEILLE_DELIVERY_{name.upper()}" for name in DeliverySettings.model_fields}
                | {f"VEILLE_PHOTOS_{name.upper()}" for name in PhotoSettings.model_fields}
                | {f"VEILLE_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields}
                | {f"VEILLE_PCS_{name.upper()}" for name in PcsSettings.model_fields})


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return doc


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_images_are_pinned() -> None:
    services = _services()
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.search(r"\d", tag) and tag != "latest", f"{name}: {image} is not pinned"
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def test_hub_services_reach_kafka_on_an_advertised_listener() -> None:
    services = _services()
    kafka_env = services["kafka"]["environment"]
    advertised = {entry.split("://", 1)[1] for entry in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    listeners = {entry.split("://", 1)[0]: entry.rsplit(":", 1)[1]
                 for entry in kafka_env["KAFKA_LISTENERS"].split(",")}
    assert set(kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")) <= set(listeners)
    assert set(services) >= HUB_SERVICES
    for name in HUB_SERVICES:
        bootstrap = services[name]["environment"]["VEILLE_BOOTSTRAP_SERVERS"]
        host, _, port = bootstrap.partition(":")
        assert host == "kafka" and bootstrap in advertised, f"{name}: {bootstrap} not advertised"
        assert port in listeners.values()


def test_hub_services_use_only_real_settings() -> None:
    for name in HUB_SERVICES:
        env = _services()[name]["environment"]
        unknown = sorted(k for k in env if k.startswith("VEILLE_") and k not in SETTINGS_ENV)
        assert unknown == [], f"{name}: {unknown} are not fields of veille.config.Settings"


def test_local_topics_fit_one_broker_and_pseudonym_key_is_required() -> None:
    for name in HUB_SERVICES:
        env = _services()[name]["environment"]
        assert env["VEILLE_REPLICATION_FACTOR"] == "1" and env["VEILLE_MIN_INSYNC_REPLICAS"] == "1"
        # `${VAR:?message}`: compose refuses to start rather than use the development key.
        assert re.fullmatch(r"\$\{VEILLE_PSEUDONYM_KEY:\?.+\}", env["VEILLE_PSEUDONYM_KEY"]), name
        assert re.fullmatch(r"\$\{VEILLE_DISPATCH_KEY:\?.+\}", env["VEILLE_DISPATCH_KEY"]), name


def test_start_order() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, condition)
    assert services["topics-init"]["command"] == ["topics", "create"]
    assert services["topics-init"]["restart"] == "no"
    assert services["topics-init"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in HUB_SERVICES - {"topics-init"}:
        assert services[name]["depends_on"]["topics-init"] == {
            "condition": "service_completed_successfully"}
    assert services["sink"]["depends_on"]["clickhouse"] == {"condition": "service_healthy"}


def test_sink_writes_to_the_clickhouse_service() -> None:
    services = _services()
    url = services["sink"]["environment"]["VEILLE_CLICKHOUSE_URL"]
    match = re.fullmatch(r"http://(?P<user>\w+):[^@]+@(?P<host>[\w-]+):(?P<port>\d+)", url)
    assert match, url
    assert match["host"] == "clickhouse" and match["port"] == "8123"
    assert match["user"] == services["clickhouse"]["environment"]["CLICKHOUSE_USER"]


def _served_ports() -> dict[str, str]:
    """host -> port of the /metrics endpoint, read from the hub services' commands."""
    ports: dict[str, str] = {}
    for name in HUB_SERVICES - {"topics-init"}:
        service = _services()[name]
        command = service["command"]
        port = (_option(command, "--port") or _option(command, "--metrics-port")
                or service["environment"].get("VEILLE_INTAKE_PORT"))
        assert port, f"{name}: no port"
        ports[name] = port
    return ports


def test_prometheus_scrapes_what_the_services_serve() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    served = _served_ports()
    scraped = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = port
    scraped.pop("localhost")  # Prometheus itself
    assert scraped == served
    prometheus = _services()["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_bind_mounts_exist() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"


def test_dockerfile_installs_every_package_dir() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, flags=re.MULTILINE)
    assert "pip install ." in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, flags=re.MULTILINE)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set(re.findall(r"^COPY (\S+) \./\S+$", dockerfile, flags=re.MULTILINE))
    package_dirs = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied, f"not copied into the image: {sorted(package_dirs - copied)}"
    # pip install . reads the readme declared in pyproject.toml; the build fails without it.
    readme = pyproject["project"]["readme"]
    assert re.search(rf"^COPY .*\b{re.escape(readme)}\b", dockerfile, flags=re.MULTILINE)
    assert (ROOT / readme).is_file(), f"{readme} (project.readme) missing: the image cannot build"
    for service in HUB_SERVICES:
        assert _services()[service]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


K8S_FILES = ["configmap.yaml", "router.yaml", "escalations.yaml", "grouping.yaml", "sink.yaml", "intake.yaml",
             "deliver.yaml", "notify.yaml", "pcs.yaml"]


def _k8s_docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if doc]


def test_kustomization_lists_the_manifests() -> None:
    kustomization = _k8s_docs("kustomization.yaml")[0]
    assert kustomization["resources"] == K8S_FILES
    assert "secret.example.yaml" not in kustomization["resources"]


@pytest.mark.parametrize("component", ["router", "escalations", "grouping", "sink", "intake", "deliver",
                                       "notify", "pcs"])
def test_k8s_deployment(component: str) -> None:
    docs = _k8s_docs(f"{component}.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # router escalations, router grouping
    routers = {"escalations": "router", "grouping": "router"}
    assert container["args"][0] == routers.get(component, component)
    assert container["image"] == _services()[component]["image"]
    assert {"configMapRef": {"name": "veille-config"}} in container["envFrom"]
    assert {"secretRef": {"name": "veille-secrets"}} in container["envFrom"]
    for env in container.get("env", []):
        assert env["name"] in SETTINGS_ENV, env["name"]
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"] == labels
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_k8s_settings_are_production_settings() -> None:
    config = _k8s_docs("configmap.yaml")[0]["data"]
    secret = _k8s_docs("secret.example.yaml")[0]["stringData"]
    assert set(config) | set(secret) <= SETTINGS_ENV
    assert not set(config) & set(secret)
    assert config["VEILLE_REPLICATION_FACTOR"] == "3" and config["VEILLE_MIN_INSYNC_REPLICAS"] == "2"
    assert config["VEILLE_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["VEILLE_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert {"VEILLE_PSEUDONYM_KEY", "VEILLE_SASL_PASSWORD", "VEILLE_CLICKHOUSE_URL"} <= set(secret)


def test_the_notifier_keeps_its_state_in_kafka_not_on_a_volume() -> None:
    """Its state is the changelog topic <prefix>.notify.tracks: no volume, more than one replica."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "volumes" not in compose["services"]["notify"]
    assert "notify-state" not in (compose.get("volumes") or {})
    deployment = next(d for d in _k8s_docs("notify.yaml") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
