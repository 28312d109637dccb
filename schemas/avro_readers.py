"""Avro binary decoders generated once per schema as straight-line Python (the readers'
counterpart of ``schemas/avro_writers.py``).

fastavro's ``schemaless_reader`` pays a per-call setup (a file object, option dicts, a
dispatch per field through its generic reader): about 12 µs for one 140-byte incident, the
largest share of the router's decoding. The reader of a record is generated source instead:
one function per record, the fields' code inline, compiled once with ``exec``. Only names
from this module and the schema's constants reach that source.

It reads the writer's schema as it is, with no schema resolution: the codec uses it only when
a message was written with the newest version of its record (the usual case) and keeps
fastavro for older versions. It gives the values fastavro gives (``uuid`` as ``UUID``,
``timestamp-millis`` as an aware UTC datetime, enums as their symbol, records as dicts;
``tests/schemas/test_schemas.py`` compares the two on random data of every released schema).
It never judges bad bytes: on anything it does not read cleanly it raises, and the codec
reads the message again with fastavro, whose failure names the dead-letter reason. So a
message is refused for the same reason, with the same words, as before this reader existed.
A schema using something not generated here (a union other than null + one type, fixed, a
logical type other than uuid and timestamp-millis) raises ``NotImplementedError`` at compile
time, and the codec keeps fastavro for it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, SafeUUID

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unread(ValueError):
    """Bytes this reader does not read cleanly: the codec asks fastavro, which says why."""


def _unread(what: str) -> Unread:
    return Unread(what)


_new = object.__new__
_set = object.__setattr__


def uuid_of(text: str) -> UUID:
    """``UUID(text)``, without its Python-level parsing for the usual 32 hex digits.

    ``UUID`` drops ``urn:``, ``uuid:``, braces and hyphens, then reads 32 characters with
    ``int(_, 16)``. Dropping only the hyphens gives the same 32 characters whenever ``int``
    accepts them (a colon or a brace it would refuse), so the value is ``UUID``'s; anything
    else is ``UUID``'s to read or refuse.
    """
    digits = text.replace("-", "")
    if len(digits) == 32:
        try:
            n = int(digits, 16)
        except ValueError:
            return UUID(text)
        u = _new(UUID)
        _set(u, "int", n)
        _set(u, "is_safe", SafeUUID.unknown)
        return u
    return UUID(text)


_GLOBALS: dict[str, Any] = {
    "_EPOCH": _EPOCH, "_timedelta": timedelta, "_UUID": uuid_of, "_unread": _unread,
    "_double": struct.Struct("<d").unpack_from, "_float": struct.Struct("<f").unpack_from,
}
_LONG_LIMIT = 1 << 64


class _Source:
    def __init__(self) -> None:
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {}
        self.named: dict[str, str] = {}  # record or enum name -> its function's name
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name


def _long(src: _Source, lines: list[str], pad: str, target: str) -> None:
    """Read a zig-zag varint at ``pos`` into ``target`` (IndexError past the end)."""
    b, shift = src.name("_b"), src.name("_s")
    lines += [f"{pad}{b} = data[pos]",
              f"{pad}pos += 1",
              f"{pad}if {b} < 128:",
              f"{pad}    {target} = ({b} >> 1) ^ -({b} & 1)",
              f"{pad}else:",
              f"{pad}    {target} = {b} & 127",
              f"{pad}    {shift} = 7",
              f"{pad}    while {b} & 128:",
              f"{pad}        {b} = data[pos]",
              f"{pad}        pos += 1",
              f"{pad}        {target} |= ({b} & 127) << {shift}",
              f"{pad}        {shift} += 7",
              f"{pad}    if {target} >= {_LONG_LIMIT}: raise _unread('varint beyond 64 bits')",
              f"{pad}    {target} = ({target} >> 1) ^ -({target} & 1)"]


def _sized(src: _Source, lines: list[str], pad: str, target: str) -> None:
    """Read a length-prefixed byte string into ``target`` (bytes)."""
    n = src.name("_n")
    _long(src, lines, pad, n)
    lines += [f"{pad}if {n} < 0 or pos + {n} > len(data): raise _unread('length')",
              f"{pad}{target} = data[pos:pos + {n}]",
              f"{pad}pos += {n}"]


def _emit(src: _Source, schema: Any, target: str, lines: list[str], pad: str) -> None:
    """Append the code reading one value of ``schema`` at ``pos`` into variable ``target``."""
    if isinstance(schema, str):
        if schema in src.named:
            lines.append(f"{pad}{target}, pos = {src.named[schema]}(data, pos)")
            return
        _primitive(src, schema, target, lines, pad)
        return
    if isinstance(schema, list):
        _union(src, schema, target, lines, pad)
        return
    kind = schema["type"]
    logical = schema.get("logicalType", "")
    if (kind, logical) == ("string", "uuid"):
        s = src.name("_t")
        _sized(src, lines, pad, s)
        lines.append(f"{pad}{target} = _UUID({s}.decode())")
    elif (kind, logical) == ("long", "timestamp-millis"):
        m = src.name("_m")
        _long(src, lines, pad, m)
        # fastavro's value (epoch + m ms), with timedelta's positional form: 3x cheaper
        lines.append(f"{pad}{target} = _EPOCH + _timedelta(0, {m} // 1000, 0, {m} % 1000)")
    elif logical:
        raise NotImplementedError(f"type {kind!r} ({logical})")
    elif kind == "record":
        fn = _record(src, schema)
        lines.append(f"{pad}{target}, pos = {fn}(data, pos)")
    elif kind == "enum":
        _enum(src, schema)  # for a later use by name
        i = src.name("_e")
        _long(src, lines, pad, i)
        lines += [f"{pad}if {i} < 0: raise _unread('enum index')",
                  f"{pad}{target} = {src.constant(tuple(schema['symbols']))}[{i}]"]  # IndexError past the end
    elif kind in ("array", "map"):
        _container(src, schema, target, lines, pad)
    elif isinstance(kind, str):
        _primitive(src, kind, target, lines, pad)
    else:
        raise NotImplementedError(f"type {kind!r}")


def _container(src: _Source, schema: dict[str, Any], target: str, lines: list[str], pad: str) -> None:
    """Blocks of items until a zero count; a negative count is followed by the block's size."""
    count, i, item = src.name("_k"), src.name("_i"), src.name("_v")
    is_map = schema["type"] == "map"
    lines.append(f"{pad}{target} = {{}}" if is_map else f"{pad}{target} = []")
    lines.append(f"{pad}while True:")
    inner = pad + "    "
    _long(src, lines, inner, count)
    lines += [f"{inner}if {count} == 0: break",
              f"{inner}if {count} < 0:",
              f"{inner}    {count} = -{count}"]
    skip = src.name("_z")
    _long(src, lines, inner + "    ", skip)  # the block's size in bytes, not needed
    lines.append(f"{inner}for {i} in range({count}):")
    body = inner + "    "
    if is_map:
        key = src.name("_y")
        _primitive(src, "string", key, lines, body)
        _emit(src, schema["values"], item, lines, body)
        lines.append(f"{body}{target}[{key}] = {item}")
    else:
        _emit(src, schema["items"], item, lines, body)
        lines.append(f"{body}{target}.append({item})")


def _enum(src: _Source, schema: dict[str, Any]) -> str:
    if schema["name"] in src.named:
        return src.named[schema["name"]]
    fn = src.name("_enum")
    src.named[schema["name"]] = fn
    symbols = src.constant(tuple(schema["symbols"]))
    lines = [f"def {fn}(data, pos):"]
    _long(src, lines, "    ", "i")
    lines += ["    if i < 0: raise _unread('enum index')",
              f"    return {symbols}[i], pos"]  # IndexError beyond the last symbol
    src.functions.append("\n".join(lines))
    return fn


def _primitive(src: _Source, kind: str, target: str, lines: list[str], pad: str) -> None:
    if kind == "null":
        lines.append(f"{pad}{target} = None")
    elif kind == "boolean":
        lines += [f"{pad}{target} = data[pos] != 0", f"{pad}pos += 1"]  # fastavro: any non-zero byte
    elif kind in ("int", "long"):
        _long(src, lines, pad, target)
    elif kind in ("float", "double"):
        width = 4 if kind == "float" else 8
        lines += [f"{pad}{target} = _{kind}(data, pos)[0]", f"{pad}pos += {width}"]
    elif kind == "string":
        s = src.name("_t")
        _sized(src, lines, pad, s)
        lines.append(f"{pad}{target} = {s}.decode()")
    elif kind == "bytes":
        _sized(src, lines, pad, target)
    else:
        raise NotImplementedError(f"unknown type {kind!r}")


def _union(src: _Source, branches: list[Any], target: str, lines: list[str], pad: str) -> None:
    if len(branches) != 2 or "null" not in branches:
        raise NotImplementedError(f"union {branches!r}")
    null_index = branches.index("null")
    index = src.name("_u")
    _long(src, lines, pad, index)
    lines += [f"{pad}if {index} == {null_index}:",
              f"{pad}    {target} = None",
              f"{pad}elif {index} == {1 - null_index}:"]
    _emit(src, branches[1 - null_index], target, lines, pad + "    ")
    lines += [f"{pad}else:", f"{pad}    raise _unread('union index')"]


def _record(src: _Source, schema: dict[str, Any]) -> str:
    if schema["name"] in src.named:
        return src.named[schema["name"]]
    fn = src.name("_record")
    src.named[schema["name"]] = fn  # before the fields: a record may refer to itself
    lines = [f"def {fn}(data, pos):"]
    items = []
    for f in schema["fields"]:
        x = src.name("_f")
        _emit(src, f["type"], x, lines, "    ")
        items.append(f"{f['name']!r}: {x}")
    lines.append(f"    return {{{', '.join(items)}}}, pos")
    src.functions.append("\n".join(lines))
    return fn


def compile_reader(schema: Any) -> Callable[[bytes, int], tuple[dict[str, Any], int]]:
    """``read(data, pos) -> (value, end)`` for a record schema parsed by fastavro: the record
    written at ``data[pos:]`` and the offset just after it. Raises (``Unread``, IndexError,
    struct.error, UnicodeDecodeError, ValueError, OverflowError) on bytes it does not read."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise NotImplementedError("only records are compiled")
    src = _Source()
    top = _record(src, schema)
    source = "\n\n".join([*src.functions, f"read = {top}"])
    namespace = {**_GLOBALS, **src.constants}
    exec(compile(source, f"<avro reader {schema.get('name')}>", "exec"), namespace)
    read: Callable[[bytes, int], tuple[dict[str, Any], int]] = namespace["read"]
    return read


__all__ = ["Unread", "compile_reader", "uuid_of"]
