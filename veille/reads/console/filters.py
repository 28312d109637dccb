"""The console's filters: what a view selects, read from and written to the URL's query string.

One model for the page, its JSON, ``export.csv`` and the report, so a shared link, the numbers
on screen and the exported rows always select the same incidents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from veille.reads.indicators import LOCAL_TZ, insee_codes
from veille.schemas.models import Channel, IncidentCategory, IncidentStatus

# "open" / "closed" are the two groups cells ask for most; the rest are the latest status itself
# ("new": no agency sent any status yet).
STATUS_GROUPS = {"open": None, "closed": ("resolved", "rejected")}
STATUSES = ("new", *(s.value for s in IncidentStatus))
SHOW = ("", "cases")  # what the map shows: reports (grid cells), or cases (docs/grouping.md)
DEFAULT_DAYS = 30


class ConsoleFilter(BaseModel):
    """Empty municipalities = the whole territory; ``to`` is exclusive; days are local (Paris)."""

    municipalities: list[str] = Field(default_factory=list)
    start: date
    end: date
    category: str = ""
    channel: str = ""
    agency: str = ""
    status: str = ""
    show: str = ""

    @field_validator("municipalities")
    @classmethod
    def _insee(cls, value: list[str]) -> list[str]:
        return insee_codes(value)

    @field_validator("category", "channel")
    @classmethod
    def _symbol(cls, value: str, info: ValidationInfo) -> str:
        enum = {"category": IncidentCategory, "channel": Channel}[str(info.field_name)]
        if value and value not in enum.__members__:
            raise ValueError(f"unknown {info.field_name} {value!r}")
        return value

    @field_validator("agency")
    @classmethod
    def _agency(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", value):
            raise ValueError(f"not an agency id: {value!r}")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value and value not in STATUS_GROUPS and value not in STATUSES:
            raise ValueError(f"unknown status {value!r}")
        return value

    @field_validator("show")
    @classmethod
    def _show(cls, value: str) -> str:
        if value not in SHOW:
            raise ValueError(f"show must be 'cases' or empty, not {value!r}")
        return value

    @model_validator(mode="after")
    def _period(self) -> ConsoleFilter:
        if self.end <= self.start:
            raise ValueError("'to' must be after 'from'")
        if (self.end - self.start).days > 3660:
            raise ValueError("period longer than ten years")
        return self

    def params(self, all_municipalities: list[str]) -> dict[str, Any]:
        """Bound SQL parameters; an empty selection means every municipality of the territory."""
        return {"munis": self.municipalities or all_municipalities, "start": self.start, "end": self.end,
                "category": self.category, "channel": self.channel, "agency": self.agency,
                "status": self.status}

    def query(self) -> dict[str, str]:
        """The query string of this view (what the page puts in its URL and its export link)."""
        out = {"municipalities": ",".join(self.municipalities), "from": self.start.isoformat(),
               "to": self.end.isoformat(), "category": self.category, "channel": self.channel,
               "agency": self.agency, "status": self.status, "show": self.show}
        return {k: v for k, v in out.items() if v}

    def query_string(self) -> str:
        return urlencode(self.query())


def default_period(today: date | None = None) -> tuple[date, date]:
    # The territory's "today": the store's days are local days (LOCAL_TZ).
    today = today or datetime.now(ZoneInfo(LOCAL_TZ)).date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today + timedelta(days=1)


def parse_filter(qs: Mapping[str, str], today: date | None = None) -> ConsoleFilter:
    """From a query string's last values; missing dates give the last 30 days (raises ValueError)."""
    start, end = default_period(today)
    munis = [m.strip() for m in qs.get("municipalities", "").split(",") if m.strip()]
    return ConsoleFilter(
        municipalities=munis,
        start=date.fromisoformat(qs["from"]) if qs.get("from") else start,
        end=date.fromisoformat(qs["to"]) if qs.get("to") else end,
        category=qs.get("category", ""), channel=qs.get("channel", ""),
        agency=qs.get("agency", ""), status=qs.get("status", ""), show=qs.get("show", ""))
