"""Avro binary encoders generated once per schema as straight-line Python.

fastavro's ``schemaless_writer`` pays a per-call setup and converts logical types through
Python-level hooks: about 18 µs for one incident, most of the publisher's and a good part of
the router's cost per event. A first version built a closure per field (half fastavro's time);
profiled, most of what was left was the calls between closures. So the encoder of each record
is now *generated source*: one function per record, the fields' code inline (varints,
strings, unions, enums), compiled once with ``exec``. Only names from this module and the
schema's constants reach that source; field names are emitted through ``repr``.

Same bytes as fastavro (``tests/schemas/test_schemas.py`` compares the two on random data of every
released schema), and the same refusals: a wrong type, a missing field without default, an
unknown enum symbol or an integer out of its Avro range raises (TypeError, KeyError,
ValueError, AttributeError, OverflowError), which the codec turns into ``EncodeError``. A
schema using something not generated here (a union other than null + one type, fixed)
raises ``NotImplementedError`` at compile time, and the codec keeps fastavro for it.
"""

from __future__ import annotations

import keyword
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()


def _millis(value: datetime | int) -> int:
    if isinstance(value, datetime):
        # fastavro's arithmetic, exactly: aware → since the epoch; naive → local time.
        if value.tzinfo is not None:
            delta = value - _EPOCH
            return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
        return int(time.mktime(value.timetuple())) * 1000 + int(value.microsecond / 1000)
    return value


def _uuid_text(value: UUID | str) -> str:
    return str(value) if isinstance(value, UUID) else value


def _not_bytes(value: Any) -> TypeError:
    return TypeError(f"expected bytes, got {type(value).__name__}")


def _not_null(value: Any) -> TypeError:
    return TypeError(f"expected null, got {type(value).__name__}")


def _pack(packer: Callable[[Any], bytes], value: Any) -> bytes:
    try:
        return packer(value)
    except struct.error as exc:
        raise TypeError(str(exc)) from exc


def _missing(name: str) -> KeyError:
    return KeyError(f"missing field {name!r} (no default)")


_GLOBALS: dict[str, Any] = {
    "_millis": _millis, "_uuid_text": _uuid_text, "_not_bytes": _not_bytes, "_not_null": _not_null,
    "_pack": _pack, "_missing": _missing, "_MISSING": _MISSING,
    "_float": struct.Struct("<f").pack, "_double": struct.Struct("<d").pack,
}
_RANGES = {"int": "-2147483648 <= {x} < 2147483648",
           "long": "-9223372036854775808 <= {x} < 9223372036854775808"}


class _Source:
    """The generated module: one function per record, emitted depth first."""

    def __init__(self, attributes: bool = False) -> None:
        self.attributes = attributes  # records read as objects (pydantic models), not mappings
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {}
        self.records: dict[str, str] = {}  # record name -> its function's name
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name


def _varint(lines: list[str], pad: str, expr: str, var: str) -> None:
    """Append the zig-zag varint of ``expr`` (an int within the long range) to ``buf``."""
    lines += [f"{pad}{var} = ({expr} << 1) ^ ({expr} >> 63)",
              f"{pad}while {var} > 127:",
              f"{pad}    buf.append(({var} & 127) | 128)",
              f"{pad}    {var} >>= 7",
              f"{pad}buf.append({var})"]


def _length(lines: list[str], pad: str, expr: str, var: str) -> None:
    """A non-negative length: below 64 its zig-zag varint is one byte."""
    lines += [f"{pad}{var} = {expr}",
              f"{pad}if {var} < 64:",
              f"{pad}    buf.append({var} << 1)",
              f"{pad}else:"]
    _varint(lines, pad + "    ", var, var)


def _emit(src: _Source, schema: Any, x: str, lines: list[str], pad: str) -> None:
    """Append the code writing the value in variable ``x`` to ``buf``."""
    if isinstance(schema, str):
        if schema in src.records:
            lines.append(f"{pad}{src.records[schema]}(buf, {x})")
            return
        _primitive(src, schema, x, lines, pad)
        return
    if isinstance(schema, list):
        _union(src, schema, x, lines, pad)
        return
    kind = schema["type"]
    logical = schema.get("logicalType", "")
    if (kind, logical) == ("string", "uuid"):
        s = src.name("_s")
        lines.append(f"{pad}{s} = _uuid_text({x}).encode()")
        _length(lines, pad, f"len({s})", src.name("_n"))
        lines.append(f"{pad}buf += {s}")
    elif (kind, logical) == ("long", "timestamp-millis"):
        m = src.name("_m")
        lines += [f"{pad}{m} = _millis({x})",
                  f"{pad}if not {_RANGES['long'].format(x=m)}:",
                  f"{pad}    raise OverflowError(f'{{{m}}} is outside the range of an Avro long')"]
        _varint(lines, pad, m, src.name("_n"))
    elif logical:
        raise NotImplementedError(f"type {kind!r} ({logical})")
    elif kind == "record":
        lines.append(f"{pad}{_record(src, schema)}(buf, {x})")
    elif kind == "enum":
        index = src.constant({symbol: i for i, symbol in enumerate(schema["symbols"])})
        if len(schema["symbols"]) <= 64:
            lines.append(f"{pad}buf.append({index}[{x}] << 1)")  # KeyError: not a symbol
        else:
            _varint(lines, pad, f"{index}[{x}]", src.name("_n"))
        src.records[schema["name"]] = src.records.get(schema["name"]) or _enum_function(src, schema, index)
    elif kind == "array":
        n, item = src.name("_n"), src.name("_i")
        lines += [f"{pad}{n} = len({x})", f"{pad}if {n}:"]  # an empty array is its end marker alone
        _length(lines, pad + "    ", n, n)
        lines.append(f"{pad}    for {item} in {x}:")
        _emit(src, schema["items"], item, lines, pad + "        ")
        lines.append(f"{pad}buf.append(0)")
    elif kind == "map":
        key, item = src.name("_k"), src.name("_i")
        n = src.name("_n")
        lines += [f"{pad}if len({x}):"]
        _varint(lines, pad + "    ", f"len({x})", n)
        lines.append(f"{pad}    for {key}, {item} in {x}.items():")
        _emit(src, "string", key, lines, pad + "        ")
        _emit(src, schema["values"], item, lines, pad + "        ")
        lines.append(f"{pad}buf.append(0)")
    elif isinstance(kind, str):
        _primitive(src, kind, x, lines, pad)
    else:
        raise NotImplementedError(f"type {kind!r}")


def _enum_function(src: _Source, schema: dict[str, Any], index: str) -> str:
    """A named enum referred to again later by name."""
    fn = src.name("_enum")
    lines = [f"def {fn}(buf, x):"]
    _varint(lines, "    ", f"{index}[x]", "n")
    src.functions.append("\n".join(lines))
    return fn


def _primitive(src: _Source, kind: str, x: str, lines: list[str], pad: str) -> None:
    if kind == "null":
        lines.append(f"{pad}if {x} is not None: raise _not_null({x})")
    elif kind == "boolean":
        lines.append(f"{pad}buf.append(1 if {x} else 0)")
    elif kind in ("int", "long"):
        lines += [f"{pad}if not {_RANGES[kind].format(x=x)}:",
                  f"{pad}    raise OverflowError(f'{{{x}}} is outside the range of an Avro {kind}')"]
        _varint(lines, pad, x, src.name("_n"))
    elif kind in ("float", "double"):
        lines.append(f"{pad}buf += _pack(_{kind}, {x})")
    elif kind == "string":
        s = src.name("_s")
        lines.append(f"{pad}{s} = {x}.encode()")
        _length(lines, pad, f"len({s})", src.name("_n"))
        lines.append(f"{pad}buf += {s}")
    elif kind == "bytes":
        lines.append(f"{pad}if not isinstance({x}, (bytes, bytearray)): raise _not_bytes({x})")
        _length(lines, pad, f"len({x})", src.name("_n"))
        lines.append(f"{pad}buf += {x}")
    else:
        raise NotImplementedError(f"unknown type {kind!r}")


def _union(src: _Source, branches: list[Any], x: str, lines: list[str], pad: str) -> None:
    if len(branches) != 2 or "null" not in branches:
        raise NotImplementedError(f"union {branches!r}")
    null_index = branches.index("null")
    null_tag, other_tag = (0, 2) if null_index == 0 else (2, 0)  # branch index, zig-zagged
    lines += [f"{pad}if {x} is None:", f"{pad}    buf.append({null_tag})", f"{pad}else:",
              f"{pad}    buf.append({other_tag})"]
    _emit(src, branches[1 - null_index], x, lines, pad + "    ")


def _record(src: _Source, schema: dict[str, Any]) -> str:
    fn = src.name("_record")
    src.records[schema["name"]] = fn  # before the fields: a record may refer to itself
    lines = [f"def {fn}(buf, v):"]
    for f in schema["fields"]:
        x = src.name("_f")
        name = repr(f["name"])
        if src.attributes:  # a model has every field, defaults included
            lines.append(f"    {x} = v.{f['name']}")
        elif "default" in f:
            lines.append(f"    {x} = v.get({name}, {src.constant(f['default'])})")
        else:
            lines += [f"    {x} = v.get({name}, _MISSING)",
                      f"    if {x} is _MISSING: raise _missing({name})"]
        _emit(src, f["type"], x, lines, "    ")
    src.functions.append("\n".join(lines))
    return fn


def compile_writer(schema: Any, header: bytes = b"", *, attributes: bool = False) -> Callable[[Any], bytes]:
    """``encode(value) -> header + body`` for a record schema parsed by fastavro.

    ``attributes``: the value and its nested records are objects whose attributes are the
    fields (the pydantic models), written without first dumping them to dicts.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise NotImplementedError("only records are compiled")
    if attributes and not all(f["name"].isidentifier() and not keyword.iskeyword(f["name"])
                              for f in _all_fields(schema)):
        raise NotImplementedError("a field name that is not a Python attribute")
    src = _Source(attributes)
    top = _record(src, schema)
    head = src.constant(bytes(header))
    entry = f"def encode(v):\n    buf = bytearray({head})\n    {top}(buf, v)\n    return bytes(buf)"
    source = "\n\n".join([*src.functions, entry])
    namespace = {**_GLOBALS, **src.constants}
    exec(compile(source, f"<avro writer {schema.get('name')}>", "exec"), namespace)
    encode: Callable[[Any], bytes] = namespace["encode"]
    return encode


def _all_fields(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, list):
        return [f for branch in schema for f in _all_fields(branch)]
    if not isinstance(schema, dict):
        return []
    if schema.get("type") == "record":
        return [f for field in schema["fields"] for f in (field, *_all_fields(field["type"]))]
    return _all_fields(schema.get("items")) + _all_fields(schema.get("values"))
