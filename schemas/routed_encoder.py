"""The router's routing record (``RoutedIncident``) written by hand, the other half of its hot
path beside ``codec.DispatchEncoder``.

The generic writer (``schemas/avro_writers.py``) spent ~9 µs per record, most of it on what
repeats from one incident to the next: the municipality, three enum symbols and the targets,
each a nested record. Here they are encoded once and kept (up to ``CACHED`` of each); only the
id, the point, the three times and the pseudonym are written per record. The router's own
records are not grouped (``case_id`` null, ``updates`` empty): anything else, and any value
this encoder does not expect, goes to the generic writer, which writes it or says what is
wrong. ``tests/schemas/test_routed_encoder.py`` proves the bytes identical to
``codec.encode("RoutedIncident", ...)``; a new RoutedIncident version fails at start here.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from veille.schemas import codec
from veille.schemas.avro_bytes import long_bytes, millis_bytes, string_bytes
from veille.schemas.catalog import Catalog, catalog

ROUTED_FIELDS = ("id", "municipality", "category", "severity", "channel", "location", "occurred_at",
                 "reported_at", "routed_at", "reporter_pseudonym", "dispatches", "case_id", "updates")
TARGET_FIELDS = ("agency_id", "service", "rule", "cross_boundary")
_POINT = struct.Struct("<dd").pack


def _millis(value: datetime) -> bytes:
    if value.tzinfo is None:  # naive: the generic writer's local-time rule
        raise TypeError("naive datetime")
    return millis_bytes(value)


class RoutedIncidentEncoder:
    CACHED = 4096

    def __init__(self, cat: Catalog | None = None) -> None:
        cat = cat or catalog()
        sv = cat.latest("RoutedIncident")
        fields = {f["name"]: f["type"] for f in sv.parsed["fields"]}
        target = fields["dispatches"]["items"]
        if (tuple(fields) != ROUTED_FIELDS or fields["updates"] != {"type": "array", "items": target["name"]}
                or tuple(f["name"] for f in target["fields"]) != TARGET_FIELDS
                or fields["location"][0] != "null" or fields["reporter_pseudonym"] != ["null", "string"]
                or fields["case_id"][0] != "null"):
            raise RuntimeError(f"{sv.label} changed: update RoutedIncidentEncoder")
        self.cat = cat
        self.header = codec.SINGLE_OBJECT_MARKER + sv.fingerprint
        self.enums = {name: {s: long_bytes(i) for i, s in enumerate(fields[name]["symbols"])}
                      for name in ("category", "severity", "channel")}
        self.services = {s: long_bytes(i) for i, s in enumerate(target["fields"][1]["type"]["symbols"])}
        self._municipalities: dict[str, bytes] = {}
        self._targets: dict[tuple[Any, ...], bytes] = {}

    def encode(self, value: Mapping[str, Any]) -> bytes:
        try:
            return self._encode(value)
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError, struct.error):
            # Not a routing record of the router's shape: the generic writer writes it, or
            # raises the EncodeError naming what is wrong.
            return codec.encode("RoutedIncident", value, cat=self.cat)

    def _encode(self, v: Mapping[str, Any]) -> bytes:
        if v.get("case_id") is not None or v.get("updates"):
            raise ValueError("grouped: the generic writer")
        municipality = v["municipality"]
        town = self._municipalities.get(municipality)
        if town is None:
            town = string_bytes(municipality)
            if len(self._municipalities) < self.CACHED:
                self._municipalities[municipality] = town
        loc = v["location"]
        pseudonym = v["reporter_pseudonym"]
        enums = self.enums
        event_id = v["id"]
        event_text = str(event_id) if isinstance(event_id, UUID) else event_id
        parts = [self.header, string_bytes(event_text), town, enums["category"][v["category"]],
                 enums["severity"][v["severity"]], enums["channel"][v["channel"]],
                 b"\x00" if loc is None else b"\x02" + _POINT(loc["lat"], loc["lon"]),
                 _millis(v["occurred_at"]), _millis(v["reported_at"]), _millis(v["routed_at"]),
                 b"\x00" if pseudonym is None else b"\x02" + string_bytes(pseudonym)]
        targets = v["dispatches"]
        if targets:
            parts.append(long_bytes(len(targets)))
            parts += [self._target(t) for t in targets]
        parts.append(b"\x00\x00\x00")  # end of dispatches, case_id null, updates empty
        return b"".join(parts)

    def _target(self, t: Mapping[str, Any]) -> bytes:
        key = (t["agency_id"], t["service"], t["rule"], t["cross_boundary"])
        data = self._targets.get(key)
        if data is None:
            data = b"".join((string_bytes(key[0]), self.services[key[1]], string_bytes(key[2]),
                             b"\x01" if key[3] else b"\x00"))
            if len(self._targets) < self.CACHED:
                self._targets[key] = data
        return data


__all__ = ["RoutedIncidentEncoder"]
