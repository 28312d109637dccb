"""The console's PCS page: ``/console/pcs?days=N`` (issue 27).

Per municipality whose safeguard plan's chain was activated in the last ``days`` (default 7):
activations, representatives notified / acknowledged, escalations to the safeguard cell,
persons checked, seen well, needing help, absent (``veille.reads.pcs`` on the store's
``pcs_cascade``). Counts only; the console is for the cells, so nothing is suppressed here
(the published annual report does that).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from veille.reads.console.pages import HEAD
from veille.reads.pcs import pcs_indicators
from veille.sinks.store import Store
from veille.territory import Territory

COLUMNS = (("activations", "Déclenchements"), ("notified", "Référents prévenus"),
           ("acknowledged", "Accusés de réception"), ("to_cell", "Relais à la cellule"),
           ("checked", "Personnes vues"), ("ok", "Tout va bien"), ("need_help", "Besoin d'aide"),
           ("absent", "Absentes"))


def pcs_rows(store: Store, territory: Territory, days: int) -> list[tuple[str, dict[str, int]]]:
    end = datetime.now(UTC).date() + timedelta(days=1)
    start = end - timedelta(days=days + 1)
    rows = []
    for code, m in sorted(territory.municipalities.items()):
        got = pcs_indicators(store, code, start, end)
        if got["activations"]:
            rows.append((f"{m.name} ({code})", got))
    return rows


def pcs_html(rows: list[tuple[str, dict[str, int]]], days: int) -> str:
    head = "".join(f'<th scope="col">{escape(label)}</th>' for _, label in COLUMNS)
    body = "".join(f'<tr><th scope="row">{escape(name)}</th>'
                   + "".join(f"<td>{got[key]}</td>" for key, _ in COLUMNS) + "</tr>"
                   for name, got in rows)
    table = (f'<table id="pcs"><caption>Chaîne d\'alerte des plans communaux de sauvegarde, '
             f'{days} derniers jours</caption><thead><tr><th scope="col">Commune</th>{head}</tr>'
             f"</thead><tbody>{body}</tbody></table>") if rows else \
        f'<p id="pcs-none">Aucun déclenchement ces {days} derniers jours.</p>'
    links = '<link rel="stylesheet" href="/static/console/report.css">'
    return HEAD.format(title="Plans communaux de sauvegarde", links=links) + f"""
<body><main id="main">
<nav><a href="/console/">Retour à la console</a></nav>
<h1>Plans communaux de sauvegarde</h1>
<p>Par commune déclenchée : référents prévenus et ayant accusé réception, personnes du registre
vues (comptes seulement, jamais de nom).</p>
{table}
</main></body></html>"""


__all__ = ["pcs_html", "pcs_rows"]
