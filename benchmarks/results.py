"""The numbers of one run, and the table that puts them next to their targets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Target:
    op: str  # ">=" (throughput), "<=" (latency) or "==" (a count that must match)
    value: float

    def met(self, measured: float) -> bool:
        if self.op == "==":
            return measured == self.value
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def gap(self, measured: float) -> str:
        """How far from the target, said plainly (never rounded into a pass)."""
        if self.met(measured):
            return "ok"
        if self.op == "==":
            return f"MISMATCH: {measured - self.value:+,.0f}"
        if self.op == ">=":
            return f"MISSED: {measured / self.value:.0%} of target" if self.value else "MISSED"
        return f"MISSED: {measured / self.value:.1f}x the limit" if self.value else "MISSED"


@dataclass
class Row:
    section: str
    name: str
    value: float | None  # None: not measured (the note says why)
    unit: str
    target: Target | None = None
    note: str = ""

    def status(self) -> str:
        if self.value is None:
            return "NOT MEASURED"
        if self.target is None:
            return "reference"
        return self.target.gap(self.value)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("µs", "s", "ms"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, section: str, name: str, value: float | None, unit: str,
            target: Target | None = None, note: str = "") -> Row:
        row = Row(section, name, value, unit, target, note)
        self.rows.append(row)
        return row

    def render(self) -> str:
        head = ("", "measured", "unit", "target", "status")
        cells = [(r.name, fmt(r.value, r.unit), r.unit,
                  f"{r.target.op} {fmt(r.target.value, r.unit)}" if r.target else "", r.status())
                 for r in self.rows]
        widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
        line = "-" * (sum(widths) + 3 * (len(widths) - 1))
        out = [line, _join(head, widths), line]
        section = None
        # Sections print in their numbered order whatever order they ran in.
        ordered = sorted(zip(self.rows, cells, strict=True), key=lambda rc: rc[0].section.split(".")[0])
        for row, cell in ordered:
            if row.section != section:
                section = row.section
                out.append(f"[{section}]")
            out.append(_join(cell, widths))
            if row.note:
                out.append(f"    {row.note}")
        out.append(line)
        return "\n".join(out)


def _join(cells: tuple[str, ...], widths: list[int]) -> str:
    name, *rest = cells
    parts = [name.ljust(widths[0])] + [c.rjust(w) if i < 2 else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(rest, widths[1:], strict=True))]
    return " | ".join(parts).rstrip()


def say(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)
