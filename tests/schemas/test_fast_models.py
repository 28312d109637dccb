"""schemas/fast_models.py accepts no incident pydantic refuses, and builds the model pydantic
builds for every one it accepts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from veille.schemas import codec
from veille.schemas.enums import Channel, IncidentCategory, Severity
from veille.schemas.fast_models import incident_from_avro
from veille.schemas.models import Incident

NOW = datetime.now(UTC).replace(microsecond=0)


def _pydantic(value: dict[str, Any]) -> Incident | None:
    try:
        return Incident.model_validate(value)
    except ValidationError:
        return None


def _same(value: dict[str, Any]) -> bool:
    """The fast path agrees with pydantic; True when it accepted the value itself."""
    fast = incident_from_avro(value)
    slow = _pydantic(value)
    if fast is None:
        return False
    assert slow is not None, "accepted a value pydantic refuses"
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.encode() == slow.encode()
    assert type(fast.category) is IncidentCategory and type(fast.channel) is Channel
    return True


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["35401", "2A004", "2B123", "3540", "354011", "٣٥٤٠١", "35401\n", "image/png", "image/p\u00e9", "a/b",
     "image/", "/x", "x" * 501, "0" * 64, "0" * 63, "A" * 64, "f" * 64 + "\n", ""])
_times = st.sampled_from([
    NOW, NOW - timedelta(days=3), NOW + timedelta(minutes=9), NOW + timedelta(minutes=11),
    datetime(2023, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC),
    NOW.replace(microsecond=123000), NOW.replace(microsecond=123456), NOW.replace(tzinfo=None),
    NOW.astimezone(timezone(timedelta(hours=2))), "2026-01-01T00:00:00Z", 1_700_000_000_000])
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([90.0, -90.0, 180.0, 90.0001, 1])


_FIELDS: dict[str, Any] = {
    "id": st.uuids() | st.just("not-a-uuid") | st.uuids().map(str),
    "municipality": _text,
    "category": st.sampled_from([*IncidentCategory, "nope", None]),
    "severity": st.sampled_from([*Severity, "nope"]), "channel": st.sampled_from([*Channel, "nope"]),
    "location": st.none() | st.fixed_dictionaries({"lat": _floats, "lon": _floats})
    | st.just({"lat": 1.0, "lon": 2.0, "alt": 3.0}) | st.just({"lat": 1.0}),
    "address": st.none() | _text, "occurred_at": _times, "reported_at": _times,
    "reporter": st.none() | st.fixed_dictionaries({"name": st.none() | _text, "phone": st.none() | _text,
                                                   "email": st.none() | _text}),
    "description": _text | st.just("d" * 4000) | st.just("d" * 4001),
    "attachments": st.lists(st.fixed_dictionaries({"uri": _text, "media_type": _text}), max_size=11),
    "photos": st.lists(st.fixed_dictionaries({"sha256": _text, "media_type": _text}), max_size=6),
    "extra": st.just(1),
}


def _valid() -> dict[str, Any]:
    return {"id": uuid.uuid4(), "municipality": "35401", "category": "flood", "severity": "severe",
            "location": {"lat": 48.1, "lon": -1.7}, "address": "1 rue",
            "occurred_at": NOW - timedelta(minutes=5), "reported_at": NOW, "channel": "phone",
            "reporter": {"name": "A", "phone": None, "email": None},
            "description": "cave inondée",
            "attachments": [{"uri": "https://x/1.jpg", "media_type": "image/jpeg"}],
            "photos": [{"sha256": "0" * 64, "media_type": "image/png"}]}


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=2, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: _FIELDS[n] for n in names})))
def test_the_fast_path_never_accepts_what_pydantic_refuses(changes: dict[str, Any]) -> None:
    """A valid incident with up to two fields replaced by generated, often hostile, values."""
    _same({**_valid(), **changes})


def test_ordinary_incidents_take_the_fast_path() -> None:
    value = _valid()
    assert _same(value)
    assert _same({**value, "location": None, "reporter": None, "attachments": [], "photos": [],
                  "address": None, "description": "", "municipality": "2A004"})
    decoded = codec.decode(Incident.model_validate(value).encode()).value
    assert _same(decoded)
