"""``export.csv``: exactly the incidents of the view's filter, for a spreadsheet.

UTF-8 with a byte-order mark and ``;`` between fields: that is what a French-locale spreadsheet
(Excel, LibreOffice) opens without an import dialog, accents intact (the comma is its decimal
separator). Positions are grid cells, never the stored point, and empty for sensitive
categories (see ``queries``).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from veille.reads.console import queries
from veille.reads.console.filters import ConsoleFilter
from veille.sinks.store import Store
from veille.territory import Territory

BOM = "\ufeff"
COLUMNS = ("id", "municipality", "municipality_name", "category", "severity", "channel",
           "reported_local", "status", "agencies", "cross_boundary", "cell_lat", "cell_lon",
           "case_id")


def export_rows(store: Store, territory: Territory, f: ConsoleFilter) -> list[dict[str, Any]]:
    munis = sorted(territory.municipalities)
    rows = store.query(*queries.export_sql(store.database, f, munis))
    for r in rows:
        m = territory.municipalities.get(r["municipality"])
        r["municipality_name"] = m.name if m else ""
        r["cross_boundary"] = "oui" if r["cross_boundary"] else "non"
    return rows


def to_csv(rows: list[dict[str, Any]], headers: dict[str, str]) -> bytes:
    """``headers`` maps a column to its label in the page's language (the catalogue)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([headers.get(f"csv_{c}", c) for c in COLUMNS])
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r[c] for c in COLUMNS])
    return (BOM + out.getvalue()).encode("utf-8")
