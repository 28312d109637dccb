"""Avro binary encoders compiled once per schema into plain Python closures.

fastavro's ``schemaless_writer`` pays a per-call setup and converts logical types through
Python-level hooks: about 18 µs for one incident on this machine, most of the publisher's
and a good part of the router's cost per event. A closure per field, built once from the
parsed schema, writes the same bytes in less than half that time.

Same bytes as fastavro (``tests/schemas/test_schemas.py`` compares the two on random data of every
released schema), and the same refusals: a wrong type, a missing field without default, an
unknown enum symbol or an integer out of its Avro range raises (TypeError, KeyError,
ValueError, OverflowError), which the codec turns into ``EncodeError``. A schema using
something not compiled here (a union other than null + one type) raises ``NotImplementedError``
at compile time, and the codec keeps fastavro for it.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

Encoder = Callable[[bytearray, Any], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RANGE = (-(2**31), 2**31)
_LONG_RANGE = (-(2**63), 2**63)
_MISSING = object()


def _varint(buf: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)  # zig-zag, for n within the long range
    while n > 0x7F:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def _long(buf: bytearray, n: int) -> None:
    if not _LONG_RANGE[0] <= n < _LONG_RANGE[1]:
        raise OverflowError(f"{n} is outside the range of an Avro long")
    _varint(buf, n)


def _int(buf: bytearray, n: int) -> None:
    # fastavro would write any Python int; other readers would read a 2**31 back as garbage.
    if not _INT_RANGE[0] <= n < _INT_RANGE[1]:
        raise OverflowError(f"{n} is outside the range of an Avro int")
    _varint(buf, n)


def _string(buf: bytearray, value: str) -> None:
    data = value.encode()
    _varint(buf, len(data))
    buf += data


def _bytes(buf: bytearray, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    _varint(buf, len(value))
    buf += value


def _packer(fmt: str) -> Encoder:
    pack = struct.Struct(fmt).pack

    def write(buf: bytearray, value: float) -> None:
        try:
            buf += pack(value)
        except struct.error as exc:
            raise TypeError(str(exc)) from exc
    return write


def _boolean(buf: bytearray, value: bool) -> None:
    buf.append(1 if value else 0)


def _null(_buf: bytearray, value: None) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")


def _uuid(buf: bytearray, value: UUID | str) -> None:
    _string(buf, str(value) if isinstance(value, UUID) else value)


def _timestamp_millis(buf: bytearray, value: datetime | int) -> None:
    if isinstance(value, datetime):
        # fastavro's arithmetic, exactly: aware → since the epoch; naive → local time.
        if value.tzinfo is not None:
            delta = value - _EPOCH
            value = (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
        else:
            value = int(time.mktime(value.timetuple())) * 1000 + int(value.microsecond / 1000)
    _long(buf, value)


_PRIMITIVES: dict[str, Encoder] = {
    "null": _null, "boolean": _boolean, "int": _int, "long": _long, "float": _packer("<f"),
    "double": _packer("<d"), "bytes": _bytes, "string": _string,
}
_LOGICAL: dict[tuple[str, str], Encoder] = {
    ("string", "uuid"): _uuid, ("long", "timestamp-millis"): _timestamp_millis,
}


def compile_writer(schema: Any) -> Callable[[Mapping[str, Any]], bytes]:
    """``encode(value) -> bytes`` for a schema parsed by fastavro."""
    encoder = _compile(schema, {})

    def encode(value: Mapping[str, Any]) -> bytes:
        buf = bytearray()
        encoder(buf, value)
        return bytes(buf)
    return encode


def _compile(schema: Any, named: dict[str, Encoder]) -> Encoder:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in named:  # a reference to a named type defined earlier (or recursively)
            return lambda buf, value: named[schema](buf, value)
        raise NotImplementedError(f"unknown type {schema!r}")
    if isinstance(schema, list):
        return _union(schema, named)
    kind = schema["type"]
    logical = _LOGICAL.get((kind, schema.get("logicalType", "")))
    if logical is not None:
        return logical
    if kind == "record":
        return _record(schema, named)
    if kind == "enum":
        index = {symbol: i for i, symbol in enumerate(schema["symbols"])}

        def enum(buf: bytearray, value: str) -> None:
            _varint(buf, index[value])  # KeyError: not a symbol of this enum
        named[schema["name"]] = enum
        return enum
    if kind == "array":
        return _array(_compile(schema["items"], named))
    if kind == "map":
        return _map(_compile(schema["values"], named))
    if isinstance(kind, str) and kind in _PRIMITIVES and "logicalType" not in schema:
        return _PRIMITIVES[kind]
    raise NotImplementedError(f"type {kind!r} ({schema.get('logicalType', 'no logical type')})")


def _record(schema: dict[str, Any], named: dict[str, Encoder]) -> Encoder:
    fields: list[tuple[str, Any, Encoder]] = []

    def record(buf: bytearray, value: Mapping[str, Any]) -> None:
        for name, default, encoder in fields:
            item = value.get(name, default)
            if item is _MISSING:
                raise KeyError(f"missing field {name!r} (no default)")
            encoder(buf, item)
    named[schema["name"]] = record  # before the fields: a record may refer to itself
    for f in schema["fields"]:
        fields.append((f["name"], f.get("default", _MISSING), _compile(f["type"], named)))
    return record


def _union(branches: list[Any], named: dict[str, Encoder]) -> Encoder:
    if len(branches) != 2 or "null" not in branches:
        raise NotImplementedError(f"union {branches!r}")
    null_index = branches.index("null")
    other = _compile(branches[1 - null_index], named)
    null_tag, other_tag = (0, 2) if null_index == 0 else (2, 0)  # branch index, zig-zagged

    def optional(buf: bytearray, value: Any) -> None:
        if value is None:
            buf.append(null_tag)
        else:
            buf.append(other_tag)
            other(buf, value)
    return optional


def _array(items: Encoder) -> Encoder:
    def array(buf: bytearray, value: Any) -> None:
        if len(value):
            _varint(buf, len(value))
            for item in value:
                items(buf, item)
        buf.append(0)
    return array


def _map(values: Encoder) -> Encoder:
    def mapping(buf: bytearray, value: Mapping[str, Any]) -> None:
        if len(value):
            _varint(buf, len(value))
            for key, item in value.items():
                _string(buf, key)
                values(buf, item)
        buf.append(0)
    return mapping
