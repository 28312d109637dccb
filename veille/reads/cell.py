"""A monitoring cell and period, and what every indicator module shares: the SQL selection of a
cell's events, shares, plain-text tables.

A cell is a set of municipalities (INSEE codes) over [from, to): local days (Europe/Paris), ``to``
exclusive (docs/indicators.md, "Common rules"). ``veille.reads.indicators`` and the modules of
single indicators (``deadlines``, ``delivery``) build on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, Field, field_validator, model_validator

from veille.schemas.models import INSEE_PATTERN

Query = tuple[str, dict[str, Any]]
LOCAL_TZ = "Europe/Paris"


def insee_codes(value: list[str]) -> list[str]:
    """A cell's municipalities: INSEE codes, each once, sorted (raises ValueError)."""
    bad = [m for m in value if not re.match(INSEE_PATTERN, m)]
    if bad:
        raise ValueError(f"not INSEE codes: {bad}")
    return sorted(set(value))


class Cell(BaseModel):
    """A monitoring cell and period, validated at the boundary (CLI, HTTP)."""

    municipalities: list[str] = Field(min_length=1)
    start: date
    end: date

    @field_validator("municipalities")
    @classmethod
    def _insee(cls, value: list[str]) -> list[str]:
        return insee_codes(value)

    @model_validator(mode="after")
    def _period(self) -> Cell:
        if self.end <= self.start:
            raise ValueError("'to' must be after 'from'")
        return self

    def params(self) -> dict[str, Any]:
        return {"munis": self.municipalities, "start": self.start, "end": self.end}


def parse_cell(query: str) -> Cell:
    """``municipalities=35001,35002&from=2026-01-01&to=2026-02-01`` → Cell (raises ValueError)."""
    qs = parse_qs(query)

    def one(name: str) -> str:
        values = qs.get(name)
        if not values:
            raise ValueError(f"missing parameter {name!r}")
        return values[-1]

    munis = [m.strip() for v in qs.get("municipalities", []) for m in v.split(",") if m.strip()]
    return Cell(municipalities=munis, start=date.fromisoformat(one("from")),
                end=date.fromisoformat(one("to")))


def cell_selection() -> str:
    """The incidents of a cell and period, or their dispatches: declared municipality in the cell,
    reported on a local day of [from, to)."""
    return ("has({munis:Array(String)}, municipality) "
            f"AND toDate(reported_at, '{LOCAL_TZ}') >= {{start:Date}} "
            f"AND toDate(reported_at, '{LOCAL_TZ}') < {{end:Date}}")


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def quantile_seconds(q: Sequence[float] | None, index: int, count: int) -> float | None:
    """One value of a ``quantilesExact`` array, in seconds rounded to the ms (None without values)."""
    if not count or not q:
        return None
    v = float(q[index])
    return None if math.isnan(v) else round(v, 3)


def text_table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table, as ``veille indicators`` prints them (shares as percentages)."""
    cells = [[("-" if v is None else (f"{v:.1%}" if isinstance(v, float) and h.endswith("share")
                                      else str(v))) for v, h in zip(r, headers, strict=True)]
             for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells] or []
    if not cells:
        out.append("(none)")
    return "\n".join(out)
