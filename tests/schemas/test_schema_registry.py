"""Confluent framing and the schema registry: the codec, the id cache, `veille schemas register`.

Codec tests use a dictionary as the id -> schema resolver; everything about the registry
itself runs against the real Apicurio Registry of the session (``schema_registry``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from veille.config import Settings
from veille.schemas import codec
from veille.schemas.catalog import SchemaVersion, catalog
from veille.schemas.models import Incident
from veille.schemas.register import COMPATIBILITY, register_catalog, registration_plan
from veille.schemas.registry import (
    RegistryClient,
    RegistryRefused,
    RegistryUnavailable,
    SchemaResolver,
    resolver_from_settings,
    schema_text,
)
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics

if TYPE_CHECKING:
    from conftest import RegistryFixture

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _incident(municipality: str = "35401") -> Incident:
    return Incident.model_validate({
        "id": uuid.uuid4(), "municipality": municipality, "category": "flash_flood", "severity": "severe",
        "channel": "app", "description": "water over the road", "location": {"lat": 48.1, "lon": -1.6},
        "occurred_at": NOW, "reported_at": NOW,
    })


class DictResolver:
    def __init__(self, ids: dict[int, SchemaVersion]) -> None:
        self.ids = ids

    def writer(self, schema_id: int) -> SchemaVersion:
        if schema_id not in self.ids:
            raise codec.DecodeError("unknown_schema", f"schema id {schema_id} is not in the schema registry")
        return self.ids[schema_id]


# ------------------------------------------------------------------ codec, no registry


def test_confluent_framing_round_trip_and_both_framings_decode() -> None:
    incident = _incident()
    latest = catalog().latest("Incident")
    framed = codec.encode_confluent("Incident", incident.to_avro(), 42)
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == 42
    # Same Avro body as single-object encoding: only the header differs.
    single = incident.encode()
    assert framed[5:] == single[codec.HEADER_LEN:]
    resolver = DictResolver({42: latest})
    for data in (framed, single):
        decoded = codec.decode(data, expect=("Incident",), resolver=resolver)
        assert Incident.from_avro(decoded.value) == incident


def test_older_version_in_confluent_framing_is_read_with_the_current_schema() -> None:
    v1 = catalog().version("Incident", 1)
    value = {k: v for k, v in _incident().to_avro().items() if k in {f["name"] for f in v1.parsed["fields"]}}
    framed = codec.encode_confluent("Incident", value, 7, version=1)
    decoded = codec.decode(framed, expect=("Incident",), resolver=DictResolver({7: v1}))
    assert decoded.writer_version == 1 and decoded.value["id"] == value["id"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x00\x00\x00\x00\x01abc", "unsupported_framing"),  # no registry configured
])
def test_confluent_framing_without_registry_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(data)
    assert err.value.reason == reason


def test_confluent_framing_errors_name_the_id() -> None:
    resolver = DictResolver({1: catalog().latest("Incident")})
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(b"\x00\x00\x00\x30\x39" + b"body", resolver=resolver)
    assert err.value.reason == "unknown_schema" and "12345" in err.value.detail
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(b"\x00\x00\x01", resolver=resolver)
    assert err.value.reason == "truncated"
    framed = codec.encode_confluent("Incident", _incident().to_avro(), 1)
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(framed, expect=("Alert",), resolver=resolver)
    assert err.value.reason == "wrong_record_type"


def test_no_registry_configured_means_no_resolver() -> None:
    assert resolver_from_settings(Settings()) is None
    with pytest.raises(ValueError, match="VEILLE_SCHEMA_REGISTRY_URL"):
        resolver_from_settings(Settings(framing="confluent"))


def test_credentials_never_sent_in_clear_to_a_remote_registry() -> None:
    with pytest.raises(ValueError, match="plain HTTP"):
        RegistryClient("http://registry.example.org/apis/ccompat/v7", username="u", password="p")
    RegistryClient("https://registry.example.org/apis/ccompat/v7", username="u", password="p")
    RegistryClient("http://127.0.0.1:8080/apis/ccompat/v7", username="u", password="p")


def test_registration_plan_covers_every_topic_and_version() -> None:
    plan = {p.subject: p for p in registration_plan(Settings(), territory_topic_specs(Settings()))}
    topics = Topics()
    assert [sv.version for sv in plan["veille.intake.35401-value"].versions] == [1, 2, 3]
    assert plan["veille.alerts-value"].record == "Alert"
    assert plan["veille.dispatch.sdis35-value"].record == "Dispatch"
    routed = {p.record for p in plan.values() if p.topic == topics.routed}
    assert routed == {"RoutedIncident", "RoutedAlert", "StatusUpdate", "Redispatch", "CaseSplit"}
    for p in plan.values():
        assert [sv.version for sv in p.versions] == [sv.version for sv in catalog().versions(p.record)]


# ------------------------------------------------------------------ the real registry


@pytest.fixture(scope="module")
def registered(schema_registry: RegistryFixture) -> dict[str, list[int]]:
    client = RegistryClient(schema_registry.url, timeout=10)
    return register_catalog(client, registration_plan(Settings(), territory_topic_specs(Settings())))


def test_register_catalog_sets_compatibility_and_is_idempotent(
        schema_registry: RegistryFixture, registered: dict[str, list[int]]) -> None:
    client = RegistryClient(schema_registry.url, timeout=10)
    subject = "veille.intake.35401-value"
    assert client.compatibility(subject) == COMPATIBILITY
    assert client.versions(subject) == [1, 2, 3]
    again = register_catalog(client, registration_plan(Settings(), territory_topic_specs(Settings())))
    assert again == registered
    assert client.versions(subject) == [1, 2, 3]


def test_incompatible_change_to_a_released_schema_is_refused_409(
        schema_registry: RegistryFixture, registered: dict[str, list[int]]) -> None:
    client = RegistryClient(schema_registry.url, timeout=10)
    schema = json.loads(schema_text(catalog().latest("Incident")))
    # A new required field without a default: the new reader cannot read v1-v3 data.
    schema["fields"].append({"name": "priority_code", "type": "int"})
    with pytest.raises(RegistryRefused) as err:
        client.register("veille.intake.35401-value", json.dumps(schema))
    assert err.value.status == 409
    assert client.versions("veille.intake.35401-value") == [1, 2, 3]
    # Editing an old released version (a field's type changed) is refused just the same.
    v1 = json.loads(schema_text(catalog().version("Incident", 1)))
    for f in v1["fields"]:
        if f["name"] == "municipality":
            f["type"] = "int"
    with pytest.raises(RegistryRefused) as err:
        client.register("veille.intake.35402-value", json.dumps(v1))
    assert err.value.status == 409


def test_resolver_caches_ids_and_survives_the_registry_stopping(
        schema_registry: RegistryFixture, registered: dict[str, list[int]]) -> None:
    client = RegistryClient(schema_registry.url, timeout=2)
    resolver = SchemaResolver(client, Topics())
    topic = "veille.intake.35403"
    framed = resolver.encode(topic, "Incident", _incident("35403").to_avro())
    schema_id = int.from_bytes(framed[1:5], "big")
    assert schema_id == registered[f"{topic}-value"][-1]
    fresh = SchemaResolver(client, Topics())
    assert codec.decode(framed, expect=("Incident",), resolver=fresh).writer_version == 3
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(b"\x00" + (999_999).to_bytes(4, "big") + b"x", resolver=fresh)
    assert err.value.reason == "unknown_schema" and "999999" in err.value.detail
    v1_id = registered[f"{topic}-value"][0]
    schema_registry.registry.stop(timeout=15)
    try:
        # Cached: still decoded. Not cached: a retriable error, never a DecodeError.
        assert codec.decode(framed, expect=("Incident",), resolver=fresh).writer_version == 3
        assert resolver.encode(topic, "Incident", _incident("35403").to_avro())[1:5] == framed[1:5]
        with pytest.raises(RegistryUnavailable):
            codec.decode(b"\x00" + v1_id.to_bytes(4, "big") + b"x", resolver=fresh)
    finally:
        schema_registry.registry.start(port=schema_registry.info.port, die_with_parent=True)
    v1_fields = {k: v for k, v in _incident("35403").to_avro().items()
                 if k not in ("address", "attachments", "photos")}
    v1_value = codec.encode_confluent("Incident", v1_fields, v1_id, version=1)
    assert codec.decode(v1_value, resolver=fresh).writer_version == 1
