"""schemas/avro_readers.py: the codec's generated readers read what fastavro reads, and bad bytes
are refused for the same reason and with the same words as by fastavro alone."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many

from veille.schemas import codec
from veille.schemas.avro_readers import compile_reader
from veille.schemas.catalog import catalog

NOW = datetime.now(UTC).replace(microsecond=0)
VERSIONS = [(n, sv.version) for n in catalog().names for sv in catalog().versions(n)]


def _fastavro_bytes(parsed: Any, datum: Any) -> bytes:
    out = BytesIO()
    fastavro.schemaless_writer(out, parsed, datum, strict_allow_default=True)
    return out.getvalue()


def _fastavro_value(parsed: Any, body: bytes) -> Any:
    return fastavro.schemaless_reader(BytesIO(body), parsed, None)


@pytest.mark.parametrize(("name", "version"), VERSIONS)
def test_the_generated_reader_reads_what_fastavro_reads(name: str, version: int) -> None:
    sv = catalog().version(name, version)
    try:
        read = compile_reader(sv.parsed)
    except NotImplementedError:
        pytest.skip(f"{sv.label} is read by fastavro")
    for datum in generate_many(sv.parsed, 60):
        body = _fastavro_bytes(sv.parsed, datum)
        value, end = read(b"HEAD" + body, 4)
        assert end == 4 + len(body)
        assert value == _fastavro_value(sv.parsed, body)


def test_every_record_the_router_reads_is_generated() -> None:
    """The generated readers are only worth it where the hot path decodes."""
    for name in ("Incident", "Alert", "StatusUpdate", "Dispatch", "RoutedIncident"):
        compile_reader(catalog().latest(name).parsed)


def _incident_bytes() -> bytes:
    return codec.encode("Incident", {
        "id": str(uuid.uuid4()), "municipality": "35001", "category": "flood", "severity": "severe",
        "location": {"lat": 48.1, "lon": -1.7}, "occurred_at": NOW - timedelta(minutes=5),
        "reported_at": NOW, "channel": "phone", "description": "cave inondée ü",
        "reporter": {"name": "A", "phone": None, "email": "a@example.org"},
        "attachments": [{"uri": "https://x/1.jpg", "media_type": "image/jpeg"}],
        "photos": [{"sha256": "0" * 64, "media_type": "image/png"}],
    })


def _outcome(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", codec.decode(data, expect=("Incident",)).value
    except codec.DecodeError as exc:
        return exc.reason, exc.detail


def test_bad_bytes_get_fastavros_reason_and_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every prefix and thousands of corrupted copies of an incident: the codec with the
    generated reader answers exactly as the codec with fastavro alone."""
    good = _incident_bytes()
    rng = random.Random(7)
    cases = [good[:n] for n in range(len(good) + 1)] + [good + b"\x00", good + b"\x02ab"]
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(codec.HEADER_LEN, len(data))] = rng.randrange(256)
        cases.append(bytes(data))
    with_reader = [_outcome(c) for c in cases]
    monkeypatch.setattr(codec, "_reader_for", lambda _sv: None)
    alone = [_outcome(c) for c in cases]
    assert with_reader == alone
    assert {kind for kind, _ in alone} >= {"ok", "truncated", "corrupt", "trailing_bytes"}


@pytest.mark.parametrize("name", ["RoutedIncident", "Dispatch", "StatusUpdate", "DeliveryReceipt"])
def test_decode_plain_reads_what_fastavro_reads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink's plain reading (uuid as text, timestamps as milliseconds) through the generated
    reader gives fastavro's values, and None where fastavro gives None."""
    sv = catalog().latest(name)
    header = codec.SINGLE_OBJECT_MARKER + sv.fingerprint
    messages = [header + _fastavro_bytes(sv.parsed, d) for d in generate_many(sv.parsed, 60)]
    messages += [m[:-1] for m in messages[:10]] + [m + b"\x00" for m in messages[:10]]
    fast = [codec.decode_plain(m, name) for m in messages]
    monkeypatch.setattr(codec, "_plain_reader_for", lambda _sv, _cat: None)
    assert fast == [codec.decode_plain(m, name) for m in messages]
    assert any(v is None for v in fast) and any(v is not None for v in fast)


def test_uuid_of_is_uuid() -> None:
    from uuid import UUID

    from veille.schemas.avro_readers import uuid_of

    u = uuid.uuid4()
    texts = [str(u), str(u).upper(), u.hex, "{" + str(u) + "}", "urn:uuid:" + str(u), "-" * 4 + u.hex,
             " " + u.hex[1:], u.hex[:31] + "_", "+" + u.hex[1:], "12_4" + u.hex[4:], u.hex[:-1],
             u.hex + "0", "g" * 32, "", "-", "0x" + u.hex[2:], str(u)[:-1] + "\n", "٣" * 32]
    for text in texts:
        try:
            expected: UUID | str = UUID(text)
        except ValueError as exc:
            expected = f"ValueError: {exc}"
        try:
            got: UUID | str = uuid_of(text)
        except ValueError as exc:
            got = f"ValueError: {exc}"
        assert got == expected, text
        if isinstance(got, UUID):
            assert isinstance(expected, UUID)
            assert got.is_safe == expected.is_safe and str(got) == str(expected)
