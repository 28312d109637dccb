"""Wire codec: Avro single-object encoding, resolved against the catalog.

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro binary body

The first bytes select the framing: Confluent Schema Registry framing (magic byte 0 +
4-byte big-endian schema id + body) is read too when a resolver is given (a schema registry
is configured, ``veille.schemas.registry``), and written by ``encode_confluent``. Decoding
never raises anything but ``DecodeError`` (and, with a resolver, ``RegistryUnavailable``),
whose ``reason`` is a stable code used for dead-letter records and metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from typing import Any, Protocol
from uuid import UUID

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from veille.schemas.avro_bytes import long_bytes as _long
from veille.schemas.avro_bytes import millis_bytes as _millis
from veille.schemas.avro_bytes import string_bytes as _string
from veille.schemas.avro_readers import compile_reader
from veille.schemas.avro_writers import compile_writer
from veille.schemas.catalog import Catalog, SchemaVersion, catalog

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = 0x00
HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8
CONFLUENT_HEADER_LEN = 5  # magic 0 + 4-byte big-endian schema id


class Resolver(Protocol):
    """Schema id -> catalog version (``veille.schemas.registry.SchemaResolver``)."""

    def writer(self, schema_id: int) -> SchemaVersion: ...


class DecodeError(ValueError):
    """A message that is not a valid event of the expected kind."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class EncodeError(ValueError):
    """A value that does not fit its schema (a bug in the caller, not bad input)."""


@dataclass(frozen=True)
class Decoded:
    record_type: str
    writer_version: int
    value: dict[str, Any]


def encode(record_type: str, value: Mapping[str, Any], *, version: int | None = None,
           cat: Catalog | None = None) -> bytes:
    cat = cat or catalog()
    sv = cat.latest(record_type) if version is None else cat.version(record_type, version)
    return _encode(sv, SINGLE_OBJECT_MARKER + sv.fingerprint, value)


def encode_object(record_type: str, value: Any, as_dict: Callable[[], Mapping[str, Any]],
                  cat: Catalog | None = None) -> bytes:
    """A model (fields as attributes) in the latest version of its schema, written without
    dumping it to a dict first (``as_dict`` is that dict, for a schema not compiled)."""
    cat = cat or catalog()
    sv = cat.latest(record_type)
    write = _object_writer_for(sv)
    if write is None:
        return _encode(sv, SINGLE_OBJECT_MARKER + sv.fingerprint, as_dict())
    try:
        return write(value)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"{sv.label}: {exc}") from exc


def encode_confluent(record_type: str, value: Mapping[str, Any], schema_id: int, *,
                     version: int | None = None, cat: Catalog | None = None) -> bytes:
    """Confluent framing; ``schema_id`` is the registry's id of that catalog version."""
    cat = cat or catalog()
    sv = cat.latest(record_type) if version is None else cat.version(record_type, version)
    return _encode(sv, bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big"), value)


def _encode(sv: SchemaVersion, header: bytes, value: Mapping[str, Any]) -> bytes:
    write = _writer_for(sv.fingerprint, sv)
    try:
        if write is not None:
            return header + write(value)
        out = BytesIO()
        out.write(header)
        # fastavro writes any Python int as a varint: 2**31 in an `int` field would be
        # written silently and read back as something else by other implementations.
        validate(value, sv.parsed, raise_errors=True, strict=False)
        fastavro.schemaless_writer(out, sv.parsed, value, strict_allow_default=True)
        return out.getvalue()
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, ValidationError) as exc:
        # OverflowError: an integer beyond its Avro range.
        raise EncodeError(f"{sv.label}: {exc}") from exc


_WRITERS: dict[bytes, Callable[[Mapping[str, Any]], bytes] | None] = {}


def _writer_for(fingerprint: bytes, sv: SchemaVersion) -> Callable[[Mapping[str, Any]], bytes] | None:
    """The compiled writer of a schema (``schemas/avro_writers.py``), or None to keep fastavro."""
    try:
        return _WRITERS[fingerprint]
    except KeyError:
        pass
    try:
        write: Callable[[Mapping[str, Any]], bytes] | None = compile_writer(sv.parsed)
    except NotImplementedError:
        write = None
    _WRITERS[fingerprint] = write
    return write


_READERS: dict[bytes, Callable[[bytes, int], tuple[dict[str, Any], int]] | None] = {}


def _reader_for(sv: SchemaVersion) -> Callable[[bytes, int], tuple[dict[str, Any], int]] | None:
    """The generated reader of a schema (``schemas/avro_readers.py``), or None to keep fastavro."""
    try:
        return _READERS[sv.fingerprint]
    except KeyError:
        pass
    try:
        read: Callable[[bytes, int], tuple[dict[str, Any], int]] | None = compile_reader(sv.parsed)
    except NotImplementedError:
        read = None
    _READERS[sv.fingerprint] = read
    return read


_PLAIN_READERS: dict[bytes, Callable[[bytes, int], tuple[dict[str, Any], int]] | None] = {}


_Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]


def _plain_reader_for(sv: SchemaVersion, cat: Catalog) -> _Reader | None:
    """The generated reader of a schema without its logical types (``decode_plain``)."""
    try:
        return _PLAIN_READERS[sv.fingerprint]
    except KeyError:
        pass
    try:
        read: _Reader | None = compile_reader(_without_logical_types(sv.fingerprint, cat))
    except NotImplementedError:
        read = None
    _PLAIN_READERS[sv.fingerprint] = read
    return read


_OBJECT_WRITERS: dict[bytes, Callable[[Any], bytes] | None] = {}


def _object_writer_for(sv: SchemaVersion) -> Callable[[Any], bytes] | None:
    """The compiled writer of a schema's objects, single-object header included."""
    try:
        return _OBJECT_WRITERS[sv.fingerprint]
    except KeyError:
        pass
    try:
        write: Callable[[Any], bytes] | None = compile_writer(
            sv.parsed, SINGLE_OBJECT_MARKER + sv.fingerprint, attributes=True)
    except NotImplementedError:
        write = None
    _OBJECT_WRITERS[sv.fingerprint] = write
    return write


@lru_cache(maxsize=256)
def _without_logical_types(fingerprint: bytes, cat: Catalog) -> Any:
    """The same binary layout with plain types: the Parsing Canonical Form drops logicalType."""
    canonical = to_parsing_canonical_form(cat.by_fingerprint[fingerprint].parsed)
    return fastavro.parse_schema(json.loads(canonical), _force=True)


def _body_ends_early(data: bytes, sv: SchemaVersion, cat: Catalog, header_len: int = HEADER_LEN) -> bool:
    """Whether the body is cut short, as opposed to complete with an invalid value.

    A value out of its logical type's range (a timestamp beyond year 9999) fails while the
    last bytes are being converted, with the reader at the end of the data: reading the
    same bytes without logical types tells the two cases apart.
    """
    body = BytesIO(data)
    body.seek(header_len)
    try:
        fastavro.schemaless_reader(body, _without_logical_types(sv.fingerprint, cat), None)
    except EOFError:
        return True
    except Exception:
        return body.tell() >= len(data)
    return False


def writer_schema(data: bytes, cat: Catalog | None = None, resolver: Resolver | None = None) -> SchemaVersion:
    """The catalog entry a message was written with, from its header alone."""
    return _writer(data, cat or catalog(), resolver)[0]


def _writer(data: bytes, cat: Catalog, resolver: Resolver | None) -> tuple[SchemaVersion, int]:
    """(writer schema, header length). A Confluent id is resolved only with a resolver."""
    if not data:
        raise DecodeError("empty_message", "message has no bytes")
    if data[:2] == SINGLE_OBJECT_MARKER:
        if len(data) < HEADER_LEN:
            raise DecodeError("truncated", f"{len(data)} bytes, shorter than the 10-byte header")
        sv = cat.by_fingerprint.get(data[2:HEADER_LEN])
        if sv is None:
            raise DecodeError("unknown_schema",
                              f"fingerprint {data[2:HEADER_LEN].hex()} is not in the catalog")
        return sv, HEADER_LEN
    if data[0] == CONFLUENT_MAGIC:
        if resolver is None:
            raise DecodeError("unsupported_framing",
                              "Confluent framing needs a schema registry (VEILLE_SCHEMA_REGISTRY_URL)")
        if len(data) < CONFLUENT_HEADER_LEN:
            raise DecodeError("truncated", f"{len(data)} bytes, shorter than the 5-byte Confluent header")
        # May raise RegistryUnavailable (not a DecodeError: the caller retries, never dead-letters).
        return resolver.writer(int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")), CONFLUENT_HEADER_LEN
    raise DecodeError("unknown_format",
                      f"first bytes {data[:2].hex()} are not Avro single-object encoding")


def decode(data: bytes | None, *, expect: Collection[str] | None = None,
           cat: Catalog | None = None, resolver: Resolver | None = None) -> Decoded:
    """Decode one message; ``expect`` lists the record types allowed on its topic.

    Both framings are read; the Confluent one only with a ``resolver`` (schema id -> version).
    """
    cat = cat or catalog()
    data = data or b""
    sv, header_len = _writer(data, cat, resolver)
    if expect is not None and sv.name not in expect:
        raise DecodeError("wrong_record_type",
                          f"{sv.label} is not accepted here (expected {', '.join(sorted(expect))})")
    reader = cat.latest(sv.name)
    if reader is sv:
        read = _reader_for(sv)
        if read is not None:
            try:
                read_value, end = read(data, header_len)
            except Exception:  # fastavro reads it again below, and names what is wrong
                end = -1
            if end == len(data):
                return Decoded(sv.name, sv.version, read_value)
    body = BytesIO(data)
    body.seek(header_len)
    try:
        value = fastavro.schemaless_reader(
            body, sv.parsed, None if reader is sv else reader.parsed
        )
    except Exception as exc:  # fastavro raises many types on bad bytes
        cut = body.tell() >= len(data) and _body_ends_early(data, sv, cat, header_len)
        if isinstance(exc, EOFError) or cut:
            raise DecodeError("truncated", f"{sv.label} body ends early") from exc
        raise DecodeError("corrupt", f"{sv.label} body unreadable: {exc!r}") from exc
    if body.tell() != len(data):
        raise DecodeError("trailing_bytes",
                          f"{sv.label}: {len(data) - body.tell()} bytes after the record")
    if not isinstance(value, dict):
        raise DecodeError("corrupt", f"{sv.label} did not decode to a record")
    return Decoded(sv.name, sv.version, value)


def decode_plain(data: bytes | None, record_type: str, *, cat: Catalog | None = None,
                 resolver: Resolver | None = None) -> dict[str, Any] | None:
    """The fields of a message written with the newest version of ``record_type``, read
    without logical types (uuid as str, timestamps as epoch milliseconds): no UUID or
    datetime objects for a consumer that only turns them into columns.

    None for anything else (another record type or version, bytes that do not read): the
    caller then takes ``decode``, which says what is wrong.
    """
    cat = cat or catalog()
    try:
        sv, header_len = _writer(data or b"", cat, resolver)
    except DecodeError:
        return None
    if sv.name != record_type or cat.latest(record_type) is not sv:
        return None
    read = _plain_reader_for(sv, cat)
    if read is not None:
        try:
            read_value, end = read(data or b"", header_len)
        except Exception:  # fastavro tries below; decode() names the reason if it fails too
            end = -1
        if end == len(data or b""):
            return read_value
    body = BytesIO(data or b"")
    body.seek(header_len)
    try:
        value = fastavro.schemaless_reader(body, _without_logical_types(sv.fingerprint, cat), None)
    except Exception:  # fastavro raises many types on bad bytes; decode() names the reason
        return None
    if body.tell() != len(data or b"") or not isinstance(value, dict):
        return None
    return value


# --------------------------------------------------------------------------- dispatches

DISPATCH_FIELDS = ("id", "event_type", "event_id", "agency_id", "service", "rule", "cross_boundary",
                   "municipality", "category", "severity", "reported_at", "routed_at", "payload", "case")


class DispatchEncoder:
    """The router's hot path: one event becomes a dispatch per agency, which differ only in
    their first fields. The shared tail is encoded once per event, each head per agency, by
    hand: a generic writer spent ~10 µs per dispatch. The few strings that repeat (municipality,
    category, severity; each target's agency, service, rule and flag) are encoded once and
    kept, up to ``CACHED`` of each. ``tests/schemas/test_schemas.py`` proves the bytes identical
    to ``encode("Dispatch", ...)``; a new Dispatch version fails here first.
    """

    CACHED = 4096

    def __init__(self, cat: Catalog | None = None) -> None:
        sv = (cat or catalog()).latest("Dispatch")
        fields = sv.parsed["fields"]
        names = tuple(f["name"] for f in fields)
        if names != DISPATCH_FIELDS:
            raise RuntimeError(f"{sv.label} changed ({names}): update DispatchEncoder")
        self.header = SINGLE_OBJECT_MARKER + sv.fingerprint
        self.event_types = {s: _long(i) for i, s in enumerate(fields[1]["type"]["symbols"])}
        self.services = {s: _long(i) for i, s in enumerate(fields[4]["type"]["symbols"])}
        self._strings: dict[str, bytes] = {}
        self._targets: dict[tuple[str, str, str, bool], bytes] = {}

    def _cached(self, value: str) -> bytes:
        data = self._strings.get(value)
        if data is None:
            data = _string(value)
            if len(self._strings) < self.CACHED:
                self._strings[value] = data
        return data

    def tail(self, municipality: str, category: str, severity: str, reported_at: datetime,
             routed_at: datetime, payload: bytes) -> bytes:
        # The router's dispatches are not grouped (case: null, the union's first branch); a
        # case's dispatches are few and written by the generic encoder (streams/grouping).
        return b"".join((self._cached(municipality), self._cached(category), self._cached(severity),
                         _millis(reported_at), _millis(routed_at), _long(len(payload)), payload, b"\x00"))

    def event(self, event_type: str, event_id: str) -> bytes:
        """The event's part of every head (event_type, event_id), once per event."""
        try:
            return self.event_types[event_type] + _string(event_id)
        except KeyError as exc:
            raise EncodeError(f"Dispatch: {exc} is not a symbol of its enum") from exc

    def target(self, agency_id: str, service: str, rule: str, cross_boundary: bool) -> bytes:
        """The target's part of the head (agency_id, service, rule, cross_boundary)."""
        key = (agency_id, service, rule, cross_boundary)
        data = self._targets.get(key)
        if data is None:
            try:
                data = b"".join((_string(agency_id), self.services[service], _string(rule),
                                 b"\x01" if cross_boundary else b"\x00"))
            except KeyError as exc:
                raise EncodeError(f"Dispatch: {exc} is not a symbol of its enum") from exc
            if len(self._targets) < self.CACHED:
                self._targets[key] = data
        return data

    def dispatch(self, id: str, event: bytes, target: bytes, tail: bytes) -> bytes:
        """One dispatch from its id (36-character text) and the parts above."""
        data = id.encode()
        return b"".join((self.header, _long(len(data)), data, event, target, tail))

    def encode(self, tail: bytes, *, id: UUID | str, event_type: str, event_id: str, agency_id: str,
               service: str, rule: str, cross_boundary: bool) -> bytes:
        return self.dispatch(str(id), self.event(event_type, event_id),
                             self.target(agency_id, service, rule, cross_boundary), tail)
