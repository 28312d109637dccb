"""The local Kafka broker: lifecycle, idempotence, CLI, and a real produce/consume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from veille.config import Settings
from veille.local.broker import LocalBroker
from veille.local.broker_config import ListenerOptions, render_properties, server_properties

if TYPE_CHECKING:
    from conftest import KafkaFixture


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = server_properties(ListenerOptions(port=1234, controller_port=1235, data_dir=tmp_path))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:1235"
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:1234"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path)
    assert "log.dirs=" + str(tmp_path) in render_properties(props)


def test_session_broker_status(kafka: KafkaFixture) -> None:
    status = kafka.broker.status()
    assert status.running and status.answering
    assert status.bootstrap == kafka.bootstrap == kafka.settings.kafka_bootstrap()
    assert kafka.bootstrap.startswith("127.0.0.1:")


def test_produce_consume_roundtrip(kafka: KafkaFixture, topic_name: str) -> None:
    conf = kafka.settings.kafka_client_config()
    admin = AdminClient(conf)
    futures = admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])
    futures[topic_name].result(timeout=30)

    payload = uuid.uuid4().bytes
    producer = Producer({**conf, "acks": "all", "enable.idempotence": True})
    producer.produce(topic_name, key=b"k", value=payload)
    assert producer.flush(30) == 0

    group = {"group.id": f"g-{topic_name}", "auto.offset.reset": "earliest"}
    consumer = Consumer({**conf, **group})
    try:
        consumer.subscribe([topic_name])
        msg = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg is not None and msg.error() is None
        assert (msg.key(), msg.value()) == (b"k", payload)
    finally:
        consumer.close()


def test_auto_create_is_off(kafka: KafkaFixture, topic_name: str) -> None:
    conf = kafka.settings.kafka_client_config()
    # Fail fast on an unknown topic instead of waiting for it to appear.
    producer = Producer({**conf, "message.timeout.ms": 5000, "topic.metadata.propagation.max.ms": 10})
    errors: list[KafkaError | None] = []
    producer.produce(topic_name, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic_name not in AdminClient(conf).list_topics(timeout=10).topics


def test_second_broker_lifecycle(kafka: KafkaFixture, tmp_path: Path) -> None:
    broker = LocalBroker(Settings(state_dir=tmp_path / "state"))
    try:
        info = broker.start()
        assert info.formatted and not info.already_running and info.auth
        assert info.bootstrap != kafka.bootstrap
        status = broker.status()
        assert status.running and status.answering and status.pid == info.pid

        again = broker.start()  # idempotent
        assert again.already_running and again.pid == info.pid

        assert broker.stop() is True
        status = broker.status()
        assert not status.running and status.pid is None
        assert not Path(f"/proc/{info.pid}").exists()
        assert "pid" not in json.loads(broker.state_file.read_text())
        assert broker.stop() is False

        # --no-auth on the same storage: PLAINTEXT clients get in, no ACL stops them.
        plain = broker.start(auth=False)
        assert not plain.auth and not plain.formatted
        assert AdminClient({"bootstrap.servers": plain.bootstrap}).list_topics(timeout=10).brokers
        assert broker.stop() is True
    finally:
        broker.kill()


def test_cli_status_json(kafka: KafkaFixture) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(kafka.settings.state_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "veille.cli", "broker", "status", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["running"] and status["answering"]
    assert status["bootstrap"] == kafka.bootstrap


def test_cli_status_not_running(tmp_path: Path) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "veille.cli", "broker", "status"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert "not running" in out.stdout


@pytest.mark.parametrize("bad", ["SSL", "SASL_SSL"])
def test_unsupported_protocol_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(RuntimeError, match="not supported by the local broker"):
        server_properties(ListenerOptions(1, 2, tmp_path, client_protocol=bad))


def test_server_properties_with_auth(tmp_path: Path) -> None:
    opts = ListenerOptions(1234, 1235, tmp_path, client_protocol="SASL_PLAINTEXT", admin_password='p"w')
    props = server_properties(opts)
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:ANONYMOUS"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    jaas = props["listener.name.client.scram-sha-512.sasl.jaas.config"]
    assert 'username="admin" password="p\\"w";' in jaas
    # The controller listener, whose principal is a superuser, is on loopback only.
    assert "CONTROLLER://127.0.0.1:1235" in props["listeners"]
    with pytest.raises(RuntimeError, match="admin password"):
        server_properties(ListenerOptions(1, 2, tmp_path, client_protocol="SASL_PLAINTEXT"))


def test_session_broker_has_auth(kafka: KafkaFixture) -> None:
    assert kafka.info.auth
    creds_file = kafka.broker.admin_credentials_file
    assert creds_file.stat().st_mode & 0o777 == 0o600
    assert kafka.broker.properties_file.stat().st_mode & 0o777 == 0o600  # inter-broker password
    user, password = kafka.broker.admin_credentials() or ("", "")
    assert user == "admin" and len(password) >= 24
    # Settings without explicit credentials find the admin by themselves (local commands)...
    local = Settings(state_dir=kafka.settings.state_dir, security_protocol="", sasl_username="",
                     sasl_password=SecretStr(""))
    creds = local.kafka_credentials()
    assert (creds.protocol, creds.username, creds.password) == ("SASL_PLAINTEXT", "admin", password)
    assert AdminClient(local.kafka_client_config()).list_topics(timeout=10).brokers
    # ...but never offer them to another cluster.
    remote = local.model_copy(update={"bootstrap_servers": "kafka.example.org:9093"})
    assert remote.kafka_credentials().protocol == "PLAINTEXT"
    assert "sasl.password" not in remote.kafka_client_config()
