"""Wire codec: Avro single-object encoding, resolved against the catalog.

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro binary body

The first bytes select the framing, so Confluent Schema Registry framing
(magic byte 0 + 4-byte schema id) can be accepted later without changing the format
of what is already on the topics. Decoding never raises anything but ``DecodeError``,
whose ``reason`` is a stable code used for dead-letter records and metrics.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from veille.schemas.catalog import Catalog, SchemaVersion, catalog

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = 0x00
HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8


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
    out = BytesIO()
    out.write(SINGLE_OBJECT_MARKER)
    out.write(sv.fingerprint)
    try:
        if _has_int(sv.fingerprint, cat):
            # fastavro writes any Python int as a varint: 2**31 in an `int` field would be
            # written silently and read back as something else by other implementations.
            validate(value, sv.parsed, raise_errors=True, strict=False)
        fastavro.schemaless_writer(out, sv.parsed, value, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, ValidationError) as exc:
        # OverflowError: a `long` beyond 64 bits.
        raise EncodeError(f"{sv.label}: {exc}") from exc
    return out.getvalue()


@lru_cache(maxsize=256)
def _has_int(fingerprint: bytes, cat: Catalog) -> bool:
    """Whether a schema has an Avro `int` anywhere (only those need range validation)."""
    return '"int"' in to_parsing_canonical_form(cat.by_fingerprint[fingerprint].parsed)


@lru_cache(maxsize=256)
def _without_logical_types(fingerprint: bytes, cat: Catalog) -> Any:
    """The same binary layout with plain types: the Parsing Canonical Form drops logicalType."""
    canonical = to_parsing_canonical_form(cat.by_fingerprint[fingerprint].parsed)
    return fastavro.parse_schema(json.loads(canonical), _force=True)


def _body_ends_early(data: bytes, sv: SchemaVersion, cat: Catalog) -> bool:
    """Whether the body is cut short, as opposed to complete with an invalid value.

    A value out of its logical type's range (a timestamp beyond year 9999) fails while the
    last bytes are being converted, with the reader at the end of the data: reading the
    same bytes without logical types tells the two cases apart.
    """
    body = BytesIO(data)
    body.seek(HEADER_LEN)
    try:
        fastavro.schemaless_reader(body, _without_logical_types(sv.fingerprint, cat), None)
    except EOFError:
        return True
    except Exception:
        return body.tell() >= len(data)
    return False


def writer_schema(data: bytes, cat: Catalog | None = None) -> SchemaVersion:
    """The catalog entry a message was written with, from its header alone."""
    cat = cat or catalog()
    if not data:
        raise DecodeError("empty_message", "message has no bytes")
    if data[:2] == SINGLE_OBJECT_MARKER:
        if len(data) < HEADER_LEN:
            raise DecodeError("truncated", f"{len(data)} bytes, shorter than the 10-byte header")
        sv = cat.by_fingerprint.get(data[2:HEADER_LEN])
        if sv is None:
            raise DecodeError("unknown_schema",
                              f"fingerprint {data[2:HEADER_LEN].hex()} is not in the catalog")
        return sv
    if data[0] == CONFLUENT_MAGIC:
        raise DecodeError("unsupported_framing",
                          "Confluent Schema Registry framing is not enabled on this hub")
    raise DecodeError("unknown_format",
                      f"first bytes {data[:2].hex()} are not Avro single-object encoding")


def decode(data: bytes | None, *, expect: Collection[str] | None = None,
           cat: Catalog | None = None) -> Decoded:
    """Decode one message; ``expect`` lists the record types allowed on its topic."""
    cat = cat or catalog()
    data = data or b""
    sv = writer_schema(data, cat)
    if expect is not None and sv.name not in expect:
        raise DecodeError("wrong_record_type",
                          f"{sv.label} is not accepted here (expected {', '.join(sorted(expect))})")
    reader = cat.latest(sv.name)
    body = BytesIO(data)
    body.seek(HEADER_LEN)
    try:
        value = fastavro.schemaless_reader(
            body, sv.parsed, None if reader is sv else reader.parsed
        )
    except Exception as exc:  # fastavro raises many types on bad bytes
        if isinstance(exc, EOFError) or (body.tell() >= len(data) and _body_ends_early(data, sv, cat)):
            raise DecodeError("truncated", f"{sv.label} body ends early") from exc
        raise DecodeError("corrupt", f"{sv.label} body unreadable: {exc!r}") from exc
    if body.tell() != len(data):
        raise DecodeError("trailing_bytes",
                          f"{sv.label}: {len(data) - body.tell()} bytes after the record")
    if not isinstance(value, dict):
        raise DecodeError("corrupt", f"{sv.label} did not decode to a record")
    return Decoded(sv.name, sv.version, value)
