"""The console's HTML: one page whose script draws everything from ``/console/api/view``, and the
printable annual report. Every text comes from the catalogue (``veille/web/locale/fr/console.json``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from veille.reads.console.filters import STATUS_GROUPS, STATUSES
from veille.reads.console.report import NOT_SHOWN
from veille.schemas.models import Channel, IncidentCategory
from veille.territory import Territory
from veille.web.assets import VENDOR_PREFIX
from veille.web.i18n import page_texts

HEAD = """<!doctype html><html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<link rel="icon" href="data:,">{links}</head>"""


def _options(values: list[tuple[str, str]], any_label: str) -> str:
    return f'<option value="">{escape(any_label)}</option>' + "".join(
        f'<option value="{escape(v)}">{escape(label)}</option>' for v, label in values)


def _select(name: str, label: str, options: str) -> str:
    return (f'<label for="f-{name}">{escape(label)}</label>'
            f'<select id="f-{name}" name="{name}">{options}</select>')


def _chain_lookup() -> str:
    """A form opening one incident's chain (console/chain.py) by its id."""
    c = {k: escape(v) for k, v in page_texts("chain").items()}
    return (f'<form id="chain-form" action="chain" method="get" class="row actions">'
            f'<label for="chain-id">{c["lookup_label"]}</label>'
            f'<input id="chain-id" name="incident" size="38" required pattern="[0-9a-fA-F-]{{36}}">'
            f'<button type="submit">{c["lookup_go"]}</button></form>')


def _show_toggle() -> str:
    """What the map shows, in the URL (``show=cases``): reports, or cases (docs/grouping.md)."""
    c = page_texts("case")
    return _select("show", c["show"], f'<option value="">{escape(c["show_reports"])}</option>'
                                      f'<option value="cases">{escape(c["show_cases"])}</option>')


def _cases_section() -> str:
    """The cases on the map, as a table (each linked to its page); shown with ``show=cases``."""
    c = {k: escape(v) for k, v in page_texts("case").items()}
    return (f'<section id="cases-section" aria-labelledby="h-cases" hidden>'
            f'<h2 id="h-cases">{c["cases_title"]}</h2><p class="hint">{c["cases_hint"]}</p>'
            f'<table id="cases-table"><caption>{c["cases_caption"]}</caption>'
            f'<thead><tr><th scope="col">{c["col_category"]}</th><th scope="col">{c["col_reports"]}</th>'
            f'<th scope="col">{c["municipalities"]}</th><th scope="col">{c["col_severity"]}</th>'
            f'<th scope="col">{c["col_first"]}</th><th scope="col">{c["col_acknowledged"]}</th>'
            f'</tr></thead><tbody></tbody></table></section>')


def console_html(territory: Territory) -> str:
    t = page_texts("console")
    munis = sorted(territory.municipalities.values(), key=lambda m: m.insee)
    categories = sorted(((c.value, t.get(f"cat_{c.value}", c.value)) for c in IncidentCategory),
                        key=lambda kv: kv[1])
    channels = [(c.value, t.get(f"ch_{c.value}", c.value)) for c in Channel]
    statuses = [(s, t.get(f"st_{s}", s)) for s in (*STATUS_GROUPS, *STATUSES)]
    agencies = [(a.id, a.name) for a in sorted(territory.agencies.values(), key=lambda a: a.name)]
    muni_boxes = "".join(
        f'<label class="muni-box"><input type="checkbox" name="municipalities" value="{m.insee}">'
        f'{escape(m.name)} <small>{m.insee}</small></label>' for m in munis)
    year = datetime.now(UTC).year
    report_options = "".join(f'<option value="{m.insee}">{escape(m.name)}</option>' for m in munis)
    links = "".join(f'<link rel="stylesheet" href="{href}">' for href in (
        f"{VENDOR_PREFIX}/leaflet.css", f"{VENDOR_PREFIX}/uPlot.min.css", "/static/console/console.css"))
    # The case texts the script needs (map markers, the cases table), prefixed as in the catalogue.
    texts = json.dumps({**t, **{f"case.{k}": v for k, v in page_texts("case").items()}},
                       ensure_ascii=False).replace("</", "<\\/")
    e = {k: escape(v) for k, v in t.items()}
    return HEAD.format(title=e["title"], links=links) + f"""
<body>
<a class="skip" href="#main">{e['summary']}</a>
<header><h1>{e['title']}</h1><p>{e['subtitle']}</p></header>
<form id="filters" aria-label="{e['filters']}">
  <fieldset><legend>{e['municipalities']}</legend>{muni_boxes}
    <p class="hint">{e['all_municipalities']} : aucune case cochée</p></fieldset>
  <div class="row">
    <label for="f-from">{e['from']}</label><input id="f-from" name="from" type="date">
    <label for="f-to">{e['to']}</label><input id="f-to" name="to" type="date">
    {_show_toggle()}
  </div>
  <div class="row">
    {_select("category", t["category"], _options(categories, t["any"]))}
    {_select("channel", t["channel"], _options(channels, t["any"]))}
    {_select("agency", t["agency"], _options(agencies, t["any"]))}
    {_select("status", t["status"], _options(statuses, t["any"]))}
    <button type="submit">{e['apply']}</button>
  </div>
  <div class="row actions">
    <a id="export" href="export.csv" download>{e['export_csv']}</a>
    <label for="r-muni">{e['report_municipality']}</label>
    <select id="r-muni">{report_options}</select>
    <label for="r-year">{e['report_year']}</label>
    <input id="r-year" type="number" min="2000" max="2100" value="{year}">
    <a id="report-link" href="report">{e['open_report']}</a>
    <a id="ops-link" href="ops">{e['ops_link']}</a>
  </div>
</form>
{_chain_lookup()}
<main id="main">
  <p id="status" role="status" aria-live="polite"></p>
  <section aria-labelledby="h-summary"><h2 id="h-summary">{e['summary']}</h2>
    <dl class="kpis">
      <div><dt>{e['kpi_reports']}</dt><dd id="kpi-reports">-</dd></div>
      <div><dt>{e['kpi_open']}</dt><dd id="kpi-open">-</dd></div>
      <div><dt>{e['kpi_cross_share']}</dt><dd id="kpi-cross">-</dd></div>
      <div><dt>{e['kpi_overdue']}</dt><dd id="kpi-overdue">-</dd></div>
      <div><dt>{e['kpi_handled']}</dt><dd id="kpi-handled">-</dd></div>
      <div><dt>{e['kpi_alerts']}</dt><dd id="kpi-alerts">-</dd></div>
      <div><dt>{e['kpi_undelivered']}</dt><dd id="kpi-undelivered">-</dd></div>
    </dl></section>
  <section aria-labelledby="h-map"><h2 id="h-map">{e['map']}</h2>
    <label for="map-indicator">{e['map_indicator']}</label>
    <select id="map-indicator">
      <option value="reports">{e['ind_reports']}</option><option value="per_1000">{e['ind_per_1000']}</option>
      <option value="open">{e['ind_open']}</option><option value="cross_share">{e['ind_cross_share']}</option>
    </select>
    <div id="map" role="region" aria-label="{e['map_label']}"></div>
    <div id="legend" aria-label="{e['legend']}"></div>
    <p class="hint">{e['map_privacy']} {e['map_alerts']}.</p></section>
  {_cases_section()}
  <section aria-labelledby="h-trends"><h2 id="h-trends">{e['trends']}</h2>
    <h3>{e['by_category']}</h3><div id="chart-category" class="chart"></div>
    <h3>{e['by_channel']}</h3><div id="chart-channel" class="chart"></div></section>
  <section aria-labelledby="h-cross"><h2 id="h-cross">{e['cross_boundary']}</h2>
    <div class="tables">
    <table id="muni-table"><caption>{e['cross_by_municipality']}</caption><thead><tr>
      <th scope="col">{e['col_municipality']}</th><th scope="col">{e['col_reports']}</th>
      <th scope="col">{e['col_open']}</th><th scope="col">{e['col_per_1000']}</th>
      <th scope="col">{e['col_dispatches']}</th><th scope="col">{e['col_cross']}</th>
      <th scope="col">{e['col_share']}</th></tr></thead><tbody></tbody></table>
    <table id="agency-table"><caption>{e['cross_by_agency']}</caption><thead><tr>
      <th scope="col">{e['col_agency']}</th><th scope="col">{e['col_dispatches']}</th>
      <th scope="col">{e['col_cross']}</th><th scope="col">{e['col_share']}</th></tr></thead>
      <tbody></tbody></table></div></section>
  <section aria-labelledby="h-times" tabindex="0"><h2 id="h-times">{e['times']}</h2>
    <p class="hint">{e['times_hint']}</p>
    <table id="times-table"><thead><tr><th scope="col">{e['col_agency']}</th>
      <th scope="col">{e['col_incidents']}</th><th scope="col">{e['col_acknowledged']}</th>
      <th scope="col">{e['col_ack_p50']}</th><th scope="col">{e['col_ack_p90']}</th>
      <th scope="col">{e['col_resolved']}</th><th scope="col">{e['col_resolve_p50']}</th>
      <th scope="col">{e['col_resolve_p90']}</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="h-deadlines" tabindex="0"><h2 id="h-deadlines">{e['deadlines']}</h2>
    <p class="hint">{e['deadlines_hint']}</p>
    <table id="deadline-table"><thead><tr><th scope="col">{e['col_agency']}</th>
      <th scope="col">{e['col_category']}</th><th scope="col">{e['col_with_deadline']}</th>
      <th scope="col">{e['col_not_acknowledged']}</th><th scope="col">{e['col_acknowledged_late']}</th>
      <th scope="col">{e['col_open_overdue']}</th><th scope="col">{e['col_open_over_3x']}</th>
      <th scope="col">{e['col_resolved_late']}</th></tr></thead><tbody></tbody></table></section>
  <section aria-labelledby="h-delivery" tabindex="0"><h2 id="h-delivery">{e['delivery']}</h2>
    <p class="hint">{e['delivery_hint']}</p>
    <div id="delivery-bodies"></div>
    <p id="delivery-none" hidden>{e['delivery_none']}</p></section>
  <section aria-labelledby="h-alerts"><h2 id="h-alerts">{e['alerts']}</h2>
    <table id="alert-table"><thead><tr><th scope="col">{e['col_sent']}</th>
      <th scope="col">{e['col_event']}</th>
      <th scope="col">{e['col_severity']}</th><th scope="col">{e['col_headline']}</th>
      <th scope="col">{e['municipalities']}</th><th scope="col">{e['col_alert_state']}</th></tr></thead>
      <tbody></tbody></table></section>
</main>
<script id="texts" type="application/json">{texts}</script>
<script src="{VENDOR_PREFIX}/leaflet.js"></script>
<script src="{VENDOR_PREFIX}/uPlot.iife.min.js"></script>
<script src="/static/console/console.js"></script>
</body></html>"""


def _shown(value: Any) -> str:
    """A report value for the page: the "not published" marker in the page's language."""
    return page_texts("console")["not_shown"] if value == NOT_SHOWN else str(value)


def _table(caption: str, headers: list[str], rows: list[tuple[Any, ...]], table_id: str) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_shown(c))}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table id="{table_id}"><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def report_html(data: dict[str, Any]) -> str:
    """``data`` is ``report.build_report``'s: every number already suppressed."""
    t = page_texts("console")
    title = f"{t['report_title']} {data['year']} \u2013 {data['name']} ({data['municipality']})"
    cats = [(t.get(f"cat_{k}", k), n) for k, n in data["by_category"]]
    chans = [(t.get(f"ch_{k}", k), n) for k, n in data["by_channel"]]
    months = [(t[f"month_{i + 1}"], n) for i, n in enumerate(data["by_month"])]
    cb = data["cross_boundary"]
    links = '<link rel="stylesheet" href="/static/console/report.css">'
    return HEAD.format(title=escape(title), links=links) + f"""
<body><main id="main">
<nav class="no-print"><a href="/console/">{escape(t['report_back'])}</a>
  <button type="button" onclick="window.print()">{escape(t['report_print'])}</button></nav>
<h1>{escape(title)}</h1>
<p>{escape(t['report_intro'])}</p>
<p class="total">{escape(t['report_total'])} : <strong id="report-total">{escape(data['total'])}</strong></p>
<p>{escape(t['report_alerts'])} : <strong id="report-alerts">{escape(data['alerts'])}</strong></p>
<div class="grid">
{_table(t['report_by_month'], [t['col_month'], t['col_count']], months, "report-months")}
{_table(t['report_by_category'], [t['col_category'], t['col_count']], cats, "report-categories")}
{_table(t['report_by_channel'], [t['col_channel'], t['col_count']], chans, "report-channels")}
</div>
<h2>{escape(t['report_cross'])}</h2>
<p>{escape(t['col_dispatches'])} : {escape(cb['dispatches'])} ;
 {escape(t['col_cross'])} : {escape(cb['cross'])} ;
 {escape(t['col_share'])} : {escape(_shown(cb['share']))}</p>
{_table(t['cross_by_agency'], [t['col_agency'], t['col_dispatches'], t['col_cross'], t['col_share']],
        data['by_agency'], "report-agencies")}
<h2>{escape(t['report_response'])}</h2>
{_table(t['report_response'], [t['col_agency'], t['col_acknowledged'], t['col_ack_p50'], t['col_resolved'],
                               t['col_resolve_p50']], data['response_times'], "report-response")}
<h2>{escape(t['report_delivery'])}</h2>
<p>{escape(t['report_delivery_intro'])}</p>
{_table(t['report_delivery'], [t['col_agency'], t['col_method'], t['col_delivered'], t['col_delivery_p50'],
                               t['col_undelivered']],
        [(a, t.get(f"method_{m}", m), *rest) for a, m, *rest in data['delivery']], "report-delivery")}
{_pcs_section(data.get('pcs'))}
{_prevention_section(data.get('prevention'))}
{_walk_reports_section(data.get('walk_reports'))}
{_cases_report_section(data.get('cases'))}
</main></body></html>"""


def _cases_report_section(rows: list[tuple[str, str]] | None) -> str:
    """Grouped reports (issue 25): values already suppressed (report.cases_section)."""
    if not rows:
        return ""
    t, labels = page_texts("case"), page_texts("console")

    def name(key: str) -> str:
        if key.startswith("cat:"):
            return t["report_cat"].format(category=labels.get(f"cat_{key[4:]}", key[4:]))
        return t[f"report_{key}"]

    return (f"<h2>{escape(t['report_title'])}</h2>\n<p>{escape(t['report_intro'])}</p>\n"
            + _table(t["report_title"], [t["report_col_indicator"], t["report_col_value"]],
                     [(name(k), v) for k, v in rows], "report-cases"))


def _prevention_section(rows: list[tuple[str, str, str, str]] | None) -> str:
    """Prevention actions per quarter and kind (issue 27): counts already suppressed."""
    if rows is None:
        return ""
    kinds = {"exploratory_walk": "Marche exploratoire", "neighbourhood_meeting": "Réunion de quartier",
             "mediation_session": "Séance de médiation"}
    shown_rows = [(q, kinds.get(k, k), n, per) for q, k, n, per in rows]
    return ("<h2>Actions de prévention</h2>\n"
            + _table("Actions de prévention par trimestre", ["Trimestre", "Action", "Nombre",
                                                             "Participants par action"],
                     shown_rows, "report-prevention"))


def _walk_reports_section(w: dict[str, str] | None) -> str:
    """Reports born from exploratory walks and their processing time (issue 27), suppressed."""
    if not w:
        return ""
    rows = [("Signalements nés des marches exploratoires", w["reports"]), ("Résolus", w["resolved"]),
            ("Délai médian de résolution", w["median"])]
    return _table("Signalements nés des marches exploratoires", ["Indicateur", "Valeur"], rows,
                  "report-walk-reports")


def _pcs_section(p: dict[str, str] | None) -> str:
    """The safeguard plan's alert cascade (issue 27): counts already suppressed."""
    if not p:
        return ""
    rows = [("Déclenchements du PCS", p["activations"]), ("Référents prévenus", p["notified"]),
            ("Référents ayant accusé réception", p["acknowledged"]),
            ("Part des référents ayant accusé réception", p["ack_share"]),
            ("Personnes du registre vues", p["checked"]), ("dont besoin d'aide", p["need_help"]),
            ("Part des personnes vues en bonne santé", p["ok_share"])]
    return ("<h2>Plan communal de sauvegarde</h2>\n"
            + _table("Chaîne d'alerte du plan communal de sauvegarde", ["Indicateur", "Nombre"], rows,
                     "report-pcs"))


def ops_html() -> str:
    t = page_texts("console")
    e = {k: escape(v) for k, v in t.items()}
    links = "".join(f'<link rel="stylesheet" href="{href}">' for href in (
        f"{VENDOR_PREFIX}/uPlot.min.css", "/static/console/console.css"))
    texts = json.dumps(t, ensure_ascii=False).replace("</", "<\\/")
    hours = "".join(f'<option value="{h}">{h}</option>' for h in (6, 24, 72, 168, 720))
    return HEAD.format(title=e["ops_title"], links=links) + f"""
<body>
<header><h1>{e['ops_title']}</h1><p>{e['ops_intro']}</p></header>
<form id="ops-filters" class="row" aria-label="{e['filters']}">
  <label for="f-hours">{e['ops_hours']}</label>
  <select id="f-hours" name="hours">{hours}</select>
  <a href="/console/">{e['console_link']}</a>
</form>
<main id="main" class="ops">
  <p id="status" role="status" aria-live="polite"></p>
  <section aria-labelledby="h-router"><h2 id="h-router">{e['ops_router']}</h2>
    <div id="chart-router" class="chart"></div></section>
  <section aria-labelledby="h-unroutable"><h2 id="h-unroutable">{e['ops_unroutable']}</h2>
    <div id="chart-unroutable" class="chart"></div></section>
  <section aria-labelledby="h-sink"><h2 id="h-sink">{e['ops_sink']}</h2>
    <div id="chart-sink" class="chart"></div></section>
  <section aria-labelledby="h-quarantine"><h2 id="h-quarantine">{e['ops_quarantine']}</h2>
    <p class="hint">{e['ops_quarantine_hint']}</p>
    <table id="ops-quarantine"><thead><tr><th scope="col">{e['col_source']}</th>
      <th scope="col">{e['col_quarantined_messages']}</th><th scope="col">{e['col_quarantined_now']}</th>
      </tr></thead><tbody></tbody></table>
    <p id="ops-quarantine-none" hidden>{e['ops_quarantine_none']}</p></section>
  <section aria-labelledby="h-totals"><h2 id="h-totals">{e['ops_totals']}</h2>
    <table id="ops-totals"><thead><tr><th scope="col">{e['col_source']}</th>
      <th scope="col">{e['col_reason']}</th><th scope="col">{e['col_count']}</th></tr></thead>
      <tbody></tbody></table></section>
</main>
<script id="texts" type="application/json">{texts}</script>
<script src="{VENDOR_PREFIX}/uPlot.iife.min.js"></script>
<script src="/static/console/ops.js"></script>
</body></html>"""
