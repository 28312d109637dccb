"""Import a file of events: JSON lines from systems, CSV daily logs from desks and phone lines.

One bad line never stops the rest: each failure is reported with its line number, field
and reason, the good lines are published, and the caller (``veille import``) exits
non-zero when anything failed, so that a desk re-submits only the corrected lines.

JSON lines: one object per line; ``"type"`` is ``incident`` (default), ``alert`` or
``status``; incident fields as in :class:`veille.schemas.models.Incident`, with the same
defaults as the HTTP intake (``id``, ``reported_at``, ``channel``).

CSV (``,`` or ``;`` separated, header row required), one incident per row::

    id,municipality,category,severity,lat,lon,address,occurred_at,reported_at,channel,
    description,reporter_name,reporter_phone,reporter_email[,notify_channel,notify_address,
    notify_on_behalf_of_relay]

A resident who consented to hear back (``notify`` object in JSON lines, ``notify_*`` columns in
CSV: producers/tracking/consent.py) gets a consent written to the restricted consent topic,
acknowledged, before the incident; that needs a Kafka user allowed to write it (the intake's).
Only ``municipality``, ``category``, ``severity`` and ``occurred_at`` are required.
Times without an offset are local times of ``timezone`` (Europe/Paris by default), as a
desk agent writes them. A row without ``id`` gets one derived from the row's text, so
importing the same log twice gives the same ids (consumers de-duplicate by id).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from veille.producers import metrics
from veille.producers.sdk import (
    RECORD_FIELD,
    DeliveryReport,
    FieldError,
    Publisher,
    Rejected,
    incident_defaults,
)
from veille.producers.tracking.consent import CONSENT_FIELD, ConsentError, consent_of
from veille.schemas.models import Channel

if TYPE_CHECKING:
    from veille.notify.consent import ConsentWriter
    from veille.notify.settings import NotifySettings

Format = Literal["jsonl", "csv"]
# Namespace of ids derived from a CSV row (uuid5): stable across imports of the same file.
ROW_ID_NAMESPACE = uuid.UUID("5b0e9c0e-2f5c-4d6c-9a43-6a1f3f8f2a71")
CSV_COLUMNS = frozenset({
    "id", "municipality", "category", "severity", "lat", "lon", "address", "occurred_at",
    "reported_at", "channel", "description", "reporter_name", "reporter_phone", "reporter_email",
    "notify_channel", "notify_address", "notify_on_behalf_of_relay",
})
CSV_REQUIRED = ("municipality", "category", "severity", "occurred_at")


@dataclass(frozen=True)
class LineFailure:
    line: int  # 1-based physical line number in the file
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ImportReport:
    path: str
    ok: int = 0  # events acknowledged by the broker
    failures: list[LineFailure] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # acknowledged event ids
    consents: int = 0  # consents to hear back written (acknowledged)

    @property
    def failed_lines(self) -> list[int]:
        return sorted({f.line for f in self.failures})

    @property
    def success(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "failed_lines": self.failed_lines,
                "failures": [{"line": f.line, "field": f.field, "reason": f.reason} for f in self.failures]}


def detect_format(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name}: use --format jsonl|csv")


def _is_incident(data: Mapping[str, Any]) -> bool:
    kind = data.get("type")
    return kind is None or str(kind).lower() == "incident"


def parse_jsonl(text: str, channel: Channel | str) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Rejected("?", [FieldError(RECORD_FIELD, f"invalid JSON: {exc.msg} "
                                                                  f"(column {exc.colno})")], "invalid_json")
            continue
        if not isinstance(data, dict):
            yield number, Rejected("?", [FieldError(RECORD_FIELD, "expected a JSON object")], "not_an_object")
            continue
        yield number, incident_defaults(data, channel) if _is_incident(data) else data


def _local_time(value: str, tz: ZoneInfo) -> datetime | str:
    """An ISO time; naive ones are read in ``tz``. Unparseable text is left to pydantic."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _csv_row(row: Mapping[str, str | None], raw: str, channel: Channel | str,
             tz: ZoneInfo) -> dict[str, Any] | Rejected:
    cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
    data: dict[str, Any] = {k: v for k, v in cells.items()
                            if v and k not in ("lat", "lon") and not k.startswith(("reporter_", "notify_"))}
    if cells.get("notify_channel"):
        data[CONSENT_FIELD] = {"channel": cells["notify_channel"], "address": cells.get("notify_address", ""),
                               "on_behalf_of_relay": cells.get("notify_on_behalf_of_relay", "").lower()
                               in ("1", "true", "oui", "yes")}
    lat, lon = cells.get("lat", ""), cells.get("lon", "")
    if lat or lon:
        if not (lat and lon):
            return Rejected("Incident", [FieldError("location", "lat and lon go together")])
        data["location"] = {"lat": lat.replace(",", "."), "lon": lon.replace(",", ".")}
    reporter = {k.removeprefix("reporter_"): v for k, v in cells.items() if k.startswith("reporter_") and v}
    if reporter:
        data["reporter"] = reporter
    for key in ("occurred_at", "reported_at"):
        if key in data:
            data[key] = _local_time(data[key], tz)
    if "id" not in data:
        data["id"] = str(uuid.uuid5(ROW_ID_NAMESPACE, raw.strip()))
    return incident_defaults(data, channel)


def parse_csv(text: str, channel: Channel | str,
              tz: ZoneInfo) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    lines = io.StringIO(text).readlines()  # the same line splitting as the csv reader's
    if not lines:
        return
    try:
        dialect: Any = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    unknown = sorted(set(header) - CSV_COLUMNS)
    missing = [c for c in CSV_REQUIRED if c not in header]
    if unknown or missing:
        errors = [FieldError(c, "unknown column") for c in unknown]
        errors += [FieldError(c, "required column missing") for c in missing]
        yield 1, Rejected("Incident", errors, "bad_row")
        return  # a wrong header makes every row ambiguous: nothing is published
    start = reader.line_num + 1
    for row in reader:
        raw = "".join(lines[start - 1:reader.line_num])
        number, start = start, reader.line_num + 1
        if None in row:  # more cells than header columns
            yield number, Rejected("Incident", [FieldError(RECORD_FIELD, "more cells than columns")],
                                   "bad_row")
            continue
        if not any((v or "").strip() for v in row.values()):
            continue
        yield number, _csv_row(row, raw, channel, tz)


def import_file(path: Path, publisher: Publisher, *, fmt: Format | None = None,
                channel: Channel | str = Channel.town_hall_desk, timezone: str = "Europe/Paris",
                flush_timeout: float | None = None, consents: ConsentWriter | None = None,
                notify: NotifySettings | None = None) -> ImportReport:
    """Publish every valid line of ``path``; the report lists each failed line and why.

    A line counts as ok only once the broker acknowledged it; a delivery failure is
    reported against its line like a validation failure.
    """
    fmt = fmt or detect_format(path)
    text = path.read_text(encoding="utf-8-sig")  # desks' spreadsheets often add a BOM
    report = ImportReport(str(path))
    parsed = parse_csv(text, channel, ZoneInfo(timezone)) if fmt == "csv" else parse_jsonl(text, channel)
    delivered: list[tuple[int, DeliveryReport]] = []
    sent: set[int] = set()

    def on_result(number: int) -> Any:
        return lambda result: delivered.append((number, result))

    for number, item in parsed:
        if isinstance(item, Rejected):
            metrics.REJECTED.labels(item.record_type, item.reason).inc()
            report.failures.extend(LineFailure(number, e.field, e.reason) for e in item.errors)
            continue
        refused = _consent(item, consents, notify)
        if refused is not None:
            report.failures.append(LineFailure(number, *refused))
            continue
        if _is_incident(item) and item.pop(CONSENT_FIELD, None) is not None:
            report.consents += 1
        try:
            publisher.publish(item, on_result=on_result(number))
            sent.add(number)
        except Rejected as exc:
            report.failures.extend(LineFailure(number, e.field, e.reason) for e in exc.errors)
        publisher.poll(0)
    publisher.flush(flush_timeout)
    for number, result in delivered:
        if result.ok:
            report.ok += 1
            report.ids.append(result.event_id)
        else:
            report.failures.append(LineFailure(number, "(delivery)", result.error or "not acknowledged"))
    for number in sorted(sent - {n for n, _ in delivered}):
        report.failures.append(LineFailure(number, "(delivery)", "not acknowledged before the flush timeout"))
    report.failures.sort(key=lambda f: f.line)
    return report


def _consent(item: dict[str, Any], consents: ConsentWriter | None,
             notify: NotifySettings | None) -> tuple[str, str] | None:
    """Write a line's consent, acknowledged, before its incident: None, or (field, reason)."""
    raw = item.get(CONSENT_FIELD)
    if raw is None or not _is_incident(item):
        return None
    if consents is None or notify is None:
        return CONSENT_FIELD, "this import takes no consent to hear back"
    from veille.notify.reference import reference

    key = notify.reference_key.get_secret_value()
    try:
        consent = consent_of(raw, incident_id=uuid.UUID(str(item.get("id"))),
                             reference=reference(key, item["id"]),
                             sms_enabled=bool(notify.sms_url))
    except ConsentError as exc:
        return exc.field, exc.reason
    except ValueError:
        return "id", "a UUID"
    if not consents.write(consent):
        return CONSENT_FIELD, "consent not acknowledged by the broker"
    return None
