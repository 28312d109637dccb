"""The contract: schemas, pydantic models and the wire codec agree, and evolve safely."""

from __future__ import annotations

import json
import types
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from io import BytesIO
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from veille.schemas import codec
from veille.schemas.avro_writers import compile_writer
from veille.schemas.catalog import Catalog, catalog
from veille.schemas.models import MODELS, EventType, Incident, ServiceKind

NOW = datetime.now(UTC).replace(microsecond=0)


def _avro_type_name(t: Any) -> str | None:
    if isinstance(t, dict):
        return str(t.get("name") or t.get("type"))
    return t if isinstance(t, str) else None


def _model_class(annotation: Any) -> Any:
    """The non-None part of an annotation (X | None -> X, list[X] -> list)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _model_class(args[0])
    if origin is typing.Annotated:
        return _model_class(typing.get_args(annotation)[0])
    return annotation


def _compare(schema: dict[str, Any], model: type[BaseModel], path: str) -> None:
    fields = schema["fields"]
    assert [f["name"] for f in fields] == list(model.model_fields), f"{path}: field names/order differ"
    for f in fields:
        mf = model.model_fields[f["name"]]
        avro_t = f["type"]
        nullable = isinstance(avro_t, list) and "null" in avro_t
        model_nullable = type(None) in typing.get_args(mf.annotation)
        assert nullable == model_nullable, f"{path}.{f['name']}: nullability differs"
        assert ("default" in f) == (not mf.is_required()), f"{path}.{f['name']}: default differs"
        inner = next(t for t in avro_t if t != "null") if isinstance(avro_t, list) else avro_t
        py = _model_class(mf.annotation)
        is_enum_class = isinstance(py, type) and issubclass(py, StrEnum)
        if isinstance(inner, dict) and inner.get("type") == "enum" and is_enum_class:
            assert inner["symbols"] == [e.value for e in py], f"{path}.{f['name']}: enum symbols differ"
        if isinstance(inner, dict) and inner.get("type") == "record":
            assert isinstance(py, type) and issubclass(py, BaseModel)
            _compare(inner, py, f"{path}.{f['name']}")
        if isinstance(inner, dict) and inner.get("type") == "array" and isinstance(inner["items"], dict):
            items = inner["items"]
            (item_py,) = typing.get_args(py) or (None,)
            if items.get("type") == "record" and item_py is not None:
                _compare(items, item_py, f"{path}.{f['name']}[]")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_latest_schema_field_by_field(name: str) -> None:
    schema = catalog().latest(name).parsed
    _compare(schema, MODELS[name], name)


def test_catalog_has_every_model_and_unique_fingerprints() -> None:
    cat = catalog()
    assert set(cat.names) == set(MODELS)
    fps = [sv.fingerprint for n in cat.names for sv in cat.versions(n)]
    assert len(fps) == len(set(fps))
    assert all(len(fp) == 8 for fp in fps)


@pytest.mark.parametrize(
    ("name", "version"), [(n, sv.version) for n in catalog().names for sv in catalog().versions(n)]
)
def test_every_released_version_is_read_by_the_current_one(name: str, version: int) -> None:
    cat = catalog()
    old = cat.version(name, version)
    for datum in generate_many(old.parsed, 20):
        data = codec.encode(name, datum, version=version)
        assert data[:2] == b"\xc3\x01" and data[2:10] == old.fingerprint
        decoded = codec.decode(data)
        assert decoded.record_type == name and decoded.writer_version == version
        current_fields = {f["name"]: f for f in cat.latest(name).parsed["fields"]}
        for field, value in decoded.value.items():
            if field in datum:
                assert _norm(value) == _norm(datum[field]), field
            else:  # added later: the reader fills the declared default
                assert value == current_fields[field]["default"], field


def _norm(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return v.hex
    if isinstance(v, datetime):
        return (v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(v, str):
        try:
            return uuid.UUID(v).hex
        except ValueError:
            return v
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


def _incident(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": str(uuid.uuid4()), "municipality": "35001", "category": "flood", "severity": "severe",
        "location": {"lat": 48.1, "lon": -1.7}, "occurred_at": NOW - timedelta(minutes=5),
        "reported_at": NOW, "channel": "phone", "description": "cave inondée",
    }
    base.update(over)
    return base


def test_incident_v1_bytes_decode_into_current_model() -> None:
    v1 = codec.encode("Incident", _incident(), version=1)
    inc = Incident.from_avro(codec.decode(v1).value)
    assert inc.address is None and inc.attachments == [] and inc.category == "flood"


def test_incident_v1_and_v2_bytes_decode_with_no_photos_and_v3_carries_them() -> None:
    for version in (1, 2):
        old = Incident.from_avro(codec.decode(codec.encode("Incident", _incident(), version=version)).value)
        assert old.photos == []
    digest = "ab" * 32
    inc = Incident.model_validate(_incident(photos=[{"sha256": digest}]))
    assert Incident.decode(inc.encode()).photos[0].sha256 == digest
    assert Incident.decode(inc.encode()).photos[0].media_type == "image/jpeg"
    with pytest.raises(ValueError):
        Incident.model_validate(_incident(photos=[{"sha256": "../etc/passwd"}]))


def test_model_round_trip_is_lossless() -> None:
    inc = Incident.model_validate(_incident(reporter={"phone": "0600000000"}, address="1 rue X"))
    assert Incident.decode(inc.encode()) == inc


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_message"),
        (None, "empty_message"),
        (b"\xc3\x01\x00\x01", "truncated"),
        (b"\xc3\x01" + b"\xff" * 8 + b"\x00", "unknown_schema"),
        (b"\x00\x00\x00\x00\x01abc", "unsupported_framing"),
        (b'{"id": 1}', "unknown_format"),
    ],
)
def test_decode_errors_have_stable_reasons(data: bytes | None, reason: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(data)
    assert err.value.reason == reason


def test_truncated_body_wrong_type_and_trailing_bytes() -> None:
    good = Incident.model_validate(_incident()).encode()
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(good[:-20])
    assert err.value.reason == "truncated"
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(good, expect=("Alert",))
    assert err.value.reason == "wrong_record_type" and "Incident v3" in str(err.value)
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(good + b"\x00\x00")
    assert err.value.reason == "trailing_bytes"


@pytest.mark.parametrize(
    ("over", "field", "needle"),
    [
        ({"municipality": "3500"}, "municipality", "pattern"),
        ({"category": "alien_invasion"}, "category", "Input should be"),
        ({"location": {"lat": float("nan"), "lon": -1.7}}, "location.lat", "finite"),
        ({"location": {"lat": 148.0, "lon": -1.7}}, "location.lat", "less than or equal"),
        ({"reported_at": NOW + timedelta(days=2)}, "reported_at", "future"),
        ({"occurred_at": datetime(2019, 1, 1, tzinfo=UTC)}, "occurred_at", "before the hub existed"),
        ({"description": "x" * 5000}, "description", "at most 4000"),
        ({"channel": "carrier_pigeon"}, "channel", "Input should be"),
        ({"extra_field": 1}, "extra_field", "Extra inputs"),
    ],
)
def test_validation_names_field_and_reason(over: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        Incident.model_validate(_incident(**over))
    errors = {".".join(map(str, e["loc"])): e["msg"] for e in err.value.errors()}
    assert field in errors, errors
    assert needle in errors[field]


def test_reporter_contact_never_appears_in_repr() -> None:
    inc = Incident.model_validate(_incident(reporter={"phone": "0611223344", "name": "Jeanne"}))
    assert "0611223344" not in repr(inc) and "Jeanne" not in str(inc)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    id=st.uuids(), event_type=st.sampled_from(list(EventType)), event_id=st.text(max_size=60),
    agency_id=st.text(max_size=40), service=st.sampled_from(list(ServiceKind)), rule=st.text(max_size=40),
    cross_boundary=st.booleans(), municipality=st.text(max_size=8), category=st.text(max_size=30),
    severity=st.text(max_size=12), payload=st.binary(max_size=3000),
    reported_at=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                             timezones=st.just(UTC)),
    routed_at=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                           timezones=st.just(UTC)),
)
def test_the_hand_written_dispatch_encoder_matches_the_generic_encoder(**fields: Any) -> None:
    """The router writes dispatches by hand for speed: byte for byte what fastavro writes."""
    encoder = codec.DispatchEncoder()
    tail = encoder.tail(fields["municipality"], fields["category"], fields["severity"], fields["reported_at"],
                        fields["routed_at"], fields["payload"])
    head = ("id", "event_type", "event_id", "agency_id", "service", "rule", "cross_boundary")
    fast = encoder.encode(tail, **{k: fields[k] for k in head})
    assert fast == codec.encode("Dispatch", fields)


# Edge cases found against the Java reference implementation (Apache Avro 1.12).
_EDGE_SCHEMA = {
    "type": "record", "name": "Edge", "namespace": "test",
    "fields": [{"name": "count", "type": "int"},
               {"name": "total", "type": "long"},
               {"name": "maybe", "type": ["null", "int"], "default": None},
               {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
}


@pytest.fixture(scope="module")
def edge_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("avro")
    (root / "Edge").mkdir()
    (root / "Edge" / "v1.avsc").write_text(json.dumps(_EDGE_SCHEMA))
    return Catalog(root)


def _edge(**over: Any) -> dict[str, Any]:
    return {"count": 1, "total": 2, "maybe": None, "at": NOW, **over}


@pytest.mark.parametrize("over", [
    {"count": 2**31}, {"count": -(2**31) - 1}, {"maybe": 2**31},  # int: 32 bits
    {"total": 2**63}, {"total": -(2**63) - 1}, {"total": 2**70},  # long: 64 bits
])
def test_integers_out_of_range_raise_encode_error(edge_catalog: Catalog, over: dict[str, Any]) -> None:
    with pytest.raises(codec.EncodeError):
        codec.encode("Edge", _edge(**over), cat=edge_catalog)


def test_integers_at_their_limits_round_trip(edge_catalog: Catalog) -> None:
    for value in (_edge(count=2**31 - 1, total=2**63 - 1, maybe=-(2**31)),
                  _edge(count=-(2**31), total=-(2**63), maybe=2**31 - 1)):
        decoded = codec.decode(codec.encode("Edge", value, cat=edge_catalog), cat=edge_catalog)
        assert decoded.value == value


def test_complete_body_with_out_of_range_timestamp_is_corrupt_not_truncated(edge_catalog: Catalog) -> None:
    good = codec.encode("Edge", _edge(), cat=edge_catalog)
    sv = edge_catalog.latest("Edge")
    raw = fastavro.parse_schema(json.loads(to_parsing_canonical_form(sv.parsed)), _force=True)
    body = BytesIO()
    fastavro.schemaless_writer(body, raw, {"count": 1, "total": 2, "maybe": None, "at": 2**62})
    bad = good[:codec.HEADER_LEN] + body.getvalue()
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(bad, cat=edge_catalog)
    assert err.value.reason == "corrupt"
    with pytest.raises(codec.DecodeError) as err:  # the same body cut short is truncated
        codec.decode(bad[:-3], cat=edge_catalog)
    assert err.value.reason == "truncated"
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(good[:-1], cat=edge_catalog)
    assert err.value.reason == "truncated"


def _fastavro_bytes(parsed: Any, datum: Any) -> bytes:
    out = BytesIO()
    fastavro.schemaless_writer(out, parsed, datum, strict_allow_default=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "version"), [(n, sv.version) for n in catalog().names for sv in catalog().versions(n)]
)
def test_the_compiled_writer_writes_fastavros_bytes(name: str, version: int) -> None:
    """schemas/avro_writers.py is the codec's encoder: byte for byte what fastavro writes."""
    sv = catalog().version(name, version)
    write = compile_writer(sv.parsed)
    for datum in generate_many(sv.parsed, 60):
        assert write(datum) == _fastavro_bytes(sv.parsed, datum)


def test_the_compiled_writer_matches_fastavro_on_models_and_refuses_what_it_refuses() -> None:
    sv = catalog().latest("Incident")
    write = compile_writer(sv.parsed)
    value = _incident(location={"lat": -0.0, "lon": float("nan")}, address="Ŀ€ ü",
                      occurred_at=datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
                      reported_at=datetime(2026, 1, 1, 12, 0, 0, 123_999,
                                           tzinfo=timezone(timedelta(hours=5))))
    assert write(value) == _fastavro_bytes(sv.parsed, value)
    model = Incident.model_validate(_incident())
    assert write(model.to_avro()) == _fastavro_bytes(sv.parsed, model.to_avro())
    for bad in ({"category": "not-a-category"}, {"municipality": 35401},
                {"location": {"lat": "x", "lon": 1.0}}, {"channel": None}):
        with pytest.raises(codec.EncodeError):
            codec.encode("Incident", _incident(**bad))
    missing = _incident()
    del missing["municipality"]
    with pytest.raises(codec.EncodeError):
        codec.encode("Incident", missing)


def _as_objects(schema: Any, datum: Any, named: dict[str, Any] | None = None) -> Any:
    """``datum`` with every record turned into an object whose attributes are its fields."""
    named = {} if named is None else named
    if isinstance(schema, str):
        schema = named.get(schema, schema)  # a named type used again
    if isinstance(schema, list):  # null + one type: the datum says which
        other = next(b for b in schema if b != "null")
        return None if datum is None else _as_objects(other, datum, named)
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum"):
        named[schema["name"]] = schema
    if isinstance(schema, dict) and schema.get("type") == "record":
        return types.SimpleNamespace(**{f["name"]: _as_objects(f["type"], datum[f["name"]], named)
                                        for f in schema["fields"]})
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [_as_objects(schema["items"], item, named) for item in datum]
    return datum


@pytest.mark.parametrize(
    ("name", "version"), [(n, sv.version) for n in catalog().names for sv in catalog().versions(n)]
)
def test_the_object_writer_writes_the_same_bytes_as_the_dict_writer(name: str, version: int) -> None:
    """Models are encoded from their attributes (no model_dump): same bytes, every schema."""
    sv = catalog().version(name, version)
    from_dict = compile_writer(sv.parsed)
    from_object = compile_writer(sv.parsed, b"HEAD", attributes=True)
    for datum in generate_many(sv.parsed, 40):
        assert from_object(_as_objects(sv.parsed, datum)) == b"HEAD" + from_dict(datum)


def test_models_encode_from_their_attributes_as_from_their_dicts() -> None:
    from cap_helpers import cap_alert
    from sink_helpers import scenario

    from veille.deadletter import make_dead_letter
    from veille.producers.cap_xml import parse_cap
    from veille.schemas.models import Alert

    records: list[Any] = [*scenario(6), Incident.model_validate(_incident()),
                          *(Alert.model_validate(a) for a in parse_cap(cap_alert("obj-writer-1"))),
                          make_dead_letter(component="router", reason="corrupt", detail="x", topic="t",
                                           partition=0, offset=1, key=b"k", value=b"\x00\x01")]
    assert {type(r).__name__ for r in records} >= {"RoutedIncident", "RoutedAlert", "StatusUpdate",
                                                   "Incident", "Alert", "DeadLetter"}
    for record in records:
        assert record.encode() == codec.encode(record.avro_name, record.to_avro())
        assert type(record).decode(record.encode()) == record
    with pytest.raises(codec.EncodeError):  # a model built without validation, with a wrong type
        Incident.model_construct(**{**Incident.model_validate(_incident()).__dict__,
                                    "municipality": 35401}).encode()
