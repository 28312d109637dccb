"""Avro's binary primitives, by hand, for the encoders written by hand (``codec.DispatchEncoder``,
``schemas/routed_encoder.py``): zig-zag varints, strings, timestamps in milliseconds. The same
bytes as fastavro and the generated writers (``tests/schemas/test_routed_encoder.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLI = timedelta(milliseconds=1)


def uvarint_loop(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Base-128 groups of 14 bits from tables: a timestamp in milliseconds (zig-zagged below 2**42,
# until 2039) is three lookups instead of a loop of six bytes. About 1 MB of small bytes.
_U14 = tuple(uvarint_loop(n) for n in range(1 << 14))  # the whole varint of n
_LOW14 = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14))  # 14 bits, more follow


def varint(n: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x4000:
        return _U14[n]
    if n < 0x10000000:
        return _LOW14[n & 0x3FFF] + _U14[n >> 14]
    if n < 0x40000000000:
        return _LOW14[n & 0x3FFF] + _LOW14[(n >> 14) & 0x3FFF] + _U14[n >> 28]
    return uvarint_loop(n)


_SMALL = 8192
_SMALL_LONGS = tuple(varint(n) for n in range(_SMALL))


def long_bytes(n: int) -> bytes:
    # String lengths and enum indexes, almost every call, come from the table.
    return _SMALL_LONGS[n] if 0 <= n < _SMALL else varint(n)


def string_bytes(value: str) -> bytes:
    data = value.encode()
    return long_bytes(len(data)) + data


_MILLIS: dict[datetime, bytes] = {}


def millis_bytes(value: datetime) -> bytes:
    # A routed incident's reported_at and routed_at are written twice (routing record and
    # dispatch): kept for the next call. Equal aware datetimes are the same instant.
    data = _MILLIS.get(value)
    if data is None:
        data = long_bytes((value - _EPOCH) // _MILLI)  # what fastavro writes for an aware datetime
        if len(_MILLIS) >= 64:
            _MILLIS.clear()
        _MILLIS[value] = data
    return data


__all__ = ["long_bytes", "millis_bytes", "string_bytes", "uvarint_loop", "varint"]
