"""Shared fixtures: ONE real local Kafka broker (KRaft) for the whole test session.

Tests that take the ``kafka`` fixture are marked ``kafka`` automatically, so
``pytest -m "not kafka"`` runs the rest without Java.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from veille.config import Settings, get_settings
from veille.local.broker import BrokerInfo, LocalBroker
from veille.local.registry import LocalRegistry, RegistryError, RegistryInfo, registry_java


@dataclass(frozen=True)
class KafkaFixture:
    settings: Settings  # kafka_bootstrap() / kafka_client_config() point at the broker
    bootstrap: str  # "127.0.0.1:PORT"
    broker: LocalBroker  # for restart()/kill() in fault tests
    info: BrokerInfo


@dataclass(frozen=True)
class RegistryFixture:
    url: str  # Confluent API base, http://127.0.0.1:PORT/apis/ccompat/v7
    registry: LocalRegistry  # for stop()/start() in fault tests
    info: RegistryInfo


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "kafka" in names:
            item.add_marker(pytest.mark.kafka)
        if "schema_registry" in names:
            item.add_marker(pytest.mark.registry)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaFixture]:
    state_dir = tmp_path_factory.mktemp("veille-state")
    # cache_dir stays the default: the broker jars are fetched once per machine.
    settings = Settings(state_dir=state_dir)
    broker = LocalBroker(settings)
    # die_with_parent: even a SIGKILLed pytest takes its broker down with it.
    info = broker.start(die_with_parent=True)
    atexit.register(broker.kill)  # safety net if the session never reaches teardown
    # The broker runs with SASL/SCRAM + ACLs: tests connect as its superuser. The credentials
    # are made explicit (not resolved from the state dir) so that copies of these settings
    # with another state_dir, fresh Settings() and `veille ...` subprocesses all still log in.
    creds = settings.kafka_credentials()
    # Grouping (docs/grouping.md) is off for the session's hubs: the tests that start a router
    # without the grouping worker expect every report dispatched; tests/grouping/ turn it on.
    env = {"VEILLE_STATE_DIR": str(state_dir), "VEILLE_SECURITY_PROTOCOL": creds.protocol,
           "VEILLE_SASL_USERNAME": creds.username, "VEILLE_SASL_PASSWORD": creds.password,
           "VEILLE_GROUPING": "false"}
    settings = settings.model_copy(update={
        "grouping": False,
        "security_protocol": creds.protocol, "sasl_username": creds.username,
        "sasl_password": SecretStr(creds.password)})
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield KafkaFixture(settings, settings.kafka_bootstrap(), broker, info)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        broker.stop(timeout=15)
        atexit.unregister(broker.kill)


_topic_counter = itertools.count(1)


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique within the session (and across sessions on a shared broker)."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:80]
    return f"test-{test}-{os.getpid()}-{next(_topic_counter)}"


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFixture]:
    """ONE real Apicurio Registry for the session, when this machine has a Java 21+."""
    try:
        registry_java()
    except RegistryError as exc:
        pytest.skip(f"no schema registry for this session: {exc}")
    # Its own state dir: the registry's H2 file is fresh for every session.
    registry = LocalRegistry(Settings(state_dir=tmp_path_factory.mktemp("veille-registry")))
    info = registry.start(die_with_parent=True)
    atexit.register(registry.stop, 5.0)
    try:
        yield RegistryFixture(info.url, registry, info)
    finally:
        registry.stop(timeout=15)
        atexit.unregister(registry.stop)
