"""schemas/routed_encoder.py writes the router's routing records byte for byte as the generic
writer does, and hands anything else to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veille.schemas import codec
from veille.schemas.avro_bytes import uvarint_loop, varint
from veille.schemas.enums import Channel, IncidentCategory, ServiceKind, Severity
from veille.schemas.routed_encoder import RoutedIncidentEncoder

_times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                      timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]))
_target = st.fixed_dictionaries({
    "agency_id": st.text(max_size=40), "service": st.sampled_from(list(ServiceKind)),
    "rule": st.text(max_size=70), "cross_boundary": st.booleans()})


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    id=st.uuids().map(str) | st.uuids(), municipality=st.text(max_size=70),
    category=st.sampled_from(list(IncidentCategory)), severity=st.sampled_from(list(Severity)),
    channel=st.sampled_from(list(Channel)),
    location=st.none() | st.fixed_dictionaries({"lat": st.floats(), "lon": st.floats(width=32)}),
    occurred_at=_times, reported_at=_times, routed_at=_times,
    reporter_pseudonym=st.none() | st.text(max_size=80),
    dispatches=st.lists(_target, max_size=70),
)
def test_the_hand_written_routed_encoder_matches_the_generic_encoder(**fields: Any) -> None:
    encoder = RoutedIncidentEncoder()
    assert encoder.encode(fields) == codec.encode("RoutedIncident", fields)
    assert encoder.encode(fields) == codec.encode("RoutedIncident", fields)  # from its caches too


def _routed(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": str(uuid.uuid4()), "municipality": "35401", "category": "flood", "severity": "severe",
            "channel": "app", "location": {"lat": 48.1, "lon": -1.7}, "occurred_at": now,
            "reported_at": now, "routed_at": now, "reporter_pseudonym": None,
            "dispatches": [{"agency_id": "a", "service": "municipal_police", "rule": "r",
                            "cross_boundary": False}], **over}


def test_grouped_records_and_unexpected_values_go_to_the_generic_writer() -> None:
    encoder = RoutedIncidentEncoder()
    target = {"agency_id": "b", "service": "municipal_police", "rule": "r", "cross_boundary": True}
    for value in (_routed(case_id=str(uuid.uuid4()), updates=[target]), _routed(updates=[target]),
                  _routed(occurred_at=datetime(2026, 1, 1, 12)),  # naive: local time
                  _routed(routed_at=1_700_000_000_000), _routed(location={"lat": 1, "lon": True})):
        assert encoder.encode(value) == codec.encode("RoutedIncident", value)
    for bad in (_routed(id=5), _routed(category="nope"), _routed(municipality=None),
                _routed(location={"lat": "x", "lon": 1.0}), _routed(reporter_pseudonym=b"x"),
                _routed(dispatches=[{**target, "service": "nope"}]), _routed(routed_at=2**70)):
        with pytest.raises(codec.EncodeError):
            encoder.encode(bad)
    missing = _routed()
    del missing["channel"]
    with pytest.raises(codec.EncodeError):
        encoder.encode(missing)


def test_the_table_varints_are_the_loop_s() -> None:
    """varint reads 14-bit groups from tables: the bytes of the plain loop, at every edge."""
    edges = [0, 1, 63, 64, 8191, 8192, 2**13, 2**14, 2**20, 2**27, 2**28, 2**40, 2**41, 2**42, 2**62,
             2**63 - 1]
    for edge in edges:
        for n in (edge - 1, edge, edge + 1, -edge - 1, -edge, -edge + 1):
            if -(2**63) <= n < 2**63:
                assert varint(n) == uvarint_loop((n << 1) ^ (n >> 63)), n
