/* The monitoring cells' console: filters in the URL, a Leaflet map of the municipalities (no tile
   server: the territory's own boundaries on a plain background) and uPlot charts, all drawn from
   /console/api/view with the page's query string. Texts come from the catalogue in #texts. */
(function () {
  'use strict';
  const T = JSON.parse(document.getElementById('texts').textContent);
  const form = document.getElementById('filters');
  const statusLine = document.getElementById('status');
  const nf = new Intl.NumberFormat('fr-FR');
  const pf = new Intl.NumberFormat('fr-FR', {style: 'percent', maximumFractionDigits: 1});
  const FIELDS = ['from', 'to', 'category', 'channel', 'agency', 'status', 'show'];
  // Sequential (ColorBrewer OrRd, 5 classes) for the choropleth; qualitative (Tableau 10) for series.
  const RAMP = ['#fef0d9', '#fdcc8a', '#fc8d59', '#e34a33', '#b30000'];
  const SERIES = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1',
                  '#ff9da7', '#9c755f', '#bab0ac'];
  const MAX_SERIES = 8;
  const DAY_STEPS = [1, 2, 7, 14, 28, 91, 182, 364].map((d) => d * 86400);
  let geo = null;
  let map = null;
  let muniLayer = null;
  let cellLayer = null;
  let alertLayer = null;
  let view = null;
  const charts = {};

  const label = (prefix, key) => T[prefix + key] || key;
  const fmtShare = (v) => (v === null || v === undefined ? '-' : pf.format(v));
  const fmtNum = (v) => (v === null || v === undefined ? '-' : nf.format(v));
  const nf1 = new Intl.NumberFormat('fr-FR', {maximumFractionDigits: 1});
  const fmtDuration = (s) => (s === null || s === undefined ? '-'
    : s < 3600 ? nf.format(Math.round(s / 60)) + '\u00a0min' : nf1.format(s / 3600) + '\u00a0h');
  // Delivery times are often seconds; ages of stuck deliveries may be days.
  const fmtShort = (s) => (s === null || s === undefined ? '-'
    : s < 60 ? nf1.format(s) + '\u00a0s' : fmtDuration(s));
  const fmtAge = (s) => (s < 172800 ? fmtDuration(Math.max(60, s)) : nf.format(Math.floor(s / 86400)) + '\u00a0j');

  function readForm() {
    const params = new URLSearchParams();
    const munis = Array.from(form.querySelectorAll('input[name=municipalities]:checked')).map((i) => i.value);
    if (munis.length) params.set('municipalities', munis.join(','));
    for (const name of FIELDS) {
      const value = form.elements[name].value;
      if (value) params.set(name, value);
    }
    return params;
  }

  function fillForm(params) {
    const munis = (params.get('municipalities') || '').split(',').filter(Boolean);
    form.querySelectorAll('input[name=municipalities]').forEach((i) => { i.checked = munis.includes(i.value); });
    for (const name of FIELDS) form.elements[name].value = params.get(name) || '';
  }

  function td(text, cls) {
    const cell = document.createElement('td');
    cell.textContent = text;
    if (cls) cell.className = cls;
    return cell;
  }

  function fillTable(id, rows, build) {
    const body = document.querySelector('#' + id + ' tbody');
    body.replaceChildren(...rows.map((r) => {
      const tr = document.createElement('tr');
      build(tr, r);
      return tr;
    }));
  }

  // A table with a caption, column headers and rows built by build(tr, row).
  function makeTable(className, caption, headers, rows, build) {
    const table = document.createElement('table');
    table.className = className;
    const cap = document.createElement('caption');
    cap.textContent = caption;
    const head = document.createElement('thead');
    const tr = document.createElement('tr');
    tr.append(...headers.map((h) => {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      return th;
    }));
    head.append(tr);
    const body = document.createElement('tbody');
    body.append(...rows.map((r) => {
      const row = document.createElement('tr');
      build(row, r);
      return row;
    }));
    table.append(cap, head, body);
    return table;
  }

  // Transmission to the bodies: one section per body, the undelivered first (the server's order).
  function renderDelivery() {
    const bodies = view.delivery.bodies;
    const now = Date.parse(view.deadlines.now);
    const age = (iso) => fmtAge((now - Date.parse(iso)) / 1000);
    const method = (m) => label('method_', m);
    document.getElementById('kpi-undelivered').textContent = fmtNum(bodies.reduce((s, b) => s + b.undelivered, 0));
    document.getElementById('delivery-none').hidden = bodies.length > 0;
    document.getElementById('delivery-bodies').replaceChildren(...bodies.map((b, i) => {
      const section = document.createElement('section');
      section.className = 'delivery-body';
      section.dataset.agency = b.agency_id;
      section.setAttribute('aria-labelledby', 'd-body-' + i);
      const h = document.createElement('h3');
      h.id = 'd-body-' + i;
      h.textContent = b.name;
      if (b.undelivered_since) {
        const badge = document.createElement('span');
        badge.className = 'badge undelivered-since';
        badge.textContent = T.delivery_undelivered_badge + ' ' + age(b.undelivered_since);
        h.append(' ', badge);
      }
      const summary = document.createElement('p');
      summary.className = 'delivery-summary';
      const part = (cls, text) => {
        const span = document.createElement('span');
        span.className = cls;
        span.textContent = text;
        return span;
      };
      summary.append(part('delivered', T.delivery_delivered + ' : ' + fmtNum(b.delivered)), ' · ',
        part('pending', T.delivery_pending + ' : ' + fmtNum(b.pending)), ' · ',
        part(b.failing ? 'failing alarm' : 'failing', T.delivery_failing + ' : ' + fmtNum(b.failing)
          + (b.failing_since ? ' ' + T.delivery_since + ' ' + age(b.failing_since) : '')));
      const methods = makeTable('delivery-methods', T.delivery_by_method,
        [T.col_method, T.col_sends, T.col_delivered, T.col_pending, T.col_failed, T.col_disabled, T.col_undelivered,
          T.col_failing_since, T.col_delivery_p50, T.col_delivery_p90], b.methods, (tr, r) => {
          tr.dataset.method = r.method;
          tr.append(td(method(r.method)), td(fmtNum(r.dispatches), 'dispatches'), td(fmtNum(r.delivered), 'delivered'),
            td(fmtNum(r.pending), 'pending'), td(fmtNum(r.failed), 'failed'), td(fmtNum(r.disabled), 'disabled'),
            td(fmtNum(r.undelivered), 'undelivered'), td(r.failing_since ? age(r.failing_since) : '-', 'failing_since'),
            td(fmtShort(r.delivery_p50_s), 'delivery_p50'), td(fmtShort(r.delivery_p90_s), 'delivery_p90'));
        });
      section.append(h, summary, methods);
      if (b.stuck.length) {
        section.append(makeTable('delivery-stuck', T.delivery_stuck,
          [T.col_ref, T.col_method, T.col_delivery_state, T.col_since, T.col_attempts, T.col_last_reply,
            T.col_last_attempt], b.stuck, (tr, r) => {
            tr.dataset.dispatch = r.dispatch_id;
            tr.dataset.state = r.state;
            const reply = [r.last_code, r.last_reply].filter((v) => v !== null && v !== '').join(' ');
            tr.append(td(r.ref, 'ref'), td(method(r.method), 'method'), td(label('delivery_state_', r.state), 'state'),
              td(age(r.since), 'since'), td(fmtNum(r.attempts), 'attempts'), td(reply || T.no_reply, 'reply'),
              td(new Date(r.last_at).toLocaleString('fr-FR', {timeZone: 'Europe/Paris'}), 'last_at'));
          }));
      }
      return section;
    }));
  }

  function indicatorValue(m, indicator) {
    return m[indicator] === undefined ? null : m[indicator];
  }

  // Classes of the choropleth: five equal intervals of [0, max]; for counts (whole numbers) no
  // more classes than values, with integer bounds, so the legend never shows "1 – 1".
  const COUNT_INDICATORS = new Set(['reports', 'open']);

  function classes(max, indicator) {
    const counts = COUNT_INDICATORS.has(indicator);
    const k = counts ? Math.max(1, Math.min(RAMP.length, Math.ceil(max))) : RAMP.length;
    const colours = Array.from({length: k}, (_, i) => RAMP[k === 1 ? 0 : Math.round((i * (RAMP.length - 1)) / (k - 1))]);
    const index = (v) => (max <= 0 ? 0 : Math.min(k - 1, Math.floor((v / max) * k)));
    const bounds = colours.map((_, i) => (counts
      ? [Math.ceil((i * max) / k), i === k - 1 ? max : Math.ceil(((i + 1) * max) / k) - 1]
      : [(i * max) / k, ((i + 1) * max) / k]));
    return {colours, index, bounds};
  }

  function colourOf(value, scale) {
    return value === null ? '#d9d9d9' : scale.colours[scale.index(value)];
  }

  function drawMap() {
    const indicator = document.getElementById('map-indicator').value;
    const byInsee = Object.fromEntries(view.municipalities.map((m) => [m.insee, m]));
    const active = view.alerts.filter((a) => a.state === 'active');
    const alerted = new Set(active.flatMap((a) => a.municipalities));
    const values = view.municipalities.filter((m) => m.selected).map((m) => indicatorValue(m, indicator))
      .filter((v) => v !== null);
    const max = values.length ? Math.max(...values) : 0;
    const scale = classes(max, indicator);
    if (!map) {
      map = L.map('map', {attributionControl: false, zoomSnap: 0.25, scrollWheelZoom: false});
    }
    if (muniLayer) muniLayer.remove();
    muniLayer = L.geoJSON(geo, {
      style: (feature) => {
        const m = byInsee[feature.properties.insee];
        const v = m && m.selected ? indicatorValue(m, indicator) : null;
        const warned = alerted.has(feature.properties.insee);
        return {className: 'muni muni-' + feature.properties.insee, color: warned ? '#c00000' : '#444',
                weight: warned ? 3 : 1, dashArray: warned ? '6 4' : null,
                fillColor: m && m.selected ? colourOf(v, scale) : '#f4f4f4', fillOpacity: 0.85};
      },
      onEachFeature: (feature, layer) => {
        const m = byInsee[feature.properties.insee];
        const v = m ? indicatorValue(m, indicator) : null;
        const shown = indicator === 'cross_share' ? fmtShare(v) : fmtNum(v);
        layer.bindTooltip(feature.properties.name + ' (' + feature.properties.insee + ') : ' + shown);
      },
    }).addTo(map);
    if (alertLayer) alertLayer.remove();
    alertLayer = L.layerGroup(active.filter((a) => a.shapes).flatMap((a) => {
      const style = {className: 'alert-area', color: '#c00000', weight: 2, fillColor: '#c00000',
        fillOpacity: 0.08, interactive: true};
      const tip = (a.headline || a.event) + ' (' + label('sev_', a.severity) + ')';
      return [...a.shapes.polygons.map((ring) => L.polygon(ring, style).bindTooltip(tip)),
        ...a.shapes.circles.map((c) => L.circle([c.lat, c.lon], {...style, radius: c.radius_m}).bindTooltip(tip))];
    })).addTo(map);
    if (cellLayer) cellLayer.remove();
    // show=cases: one marker per case (its grid cell), sized by its reports, opening its page.
    cellLayer = view.filter.show === 'cases'
      ? L.layerGroup(view.cases.map((c) => L.circleMarker([c.lat, c.lon], {
        className: 'case-marker', radius: 4 + 3 * Math.sqrt(c.reports), color: '#5b1a66', weight: 1.5,
        fillColor: '#a64ca6', fillOpacity: 0.6,
      }).bindTooltip(T['case.map_case'] + ' : ' + label('cat_', c.category) + ', ' + fmtNum(c.reports) + ' '
        + T['case.col_reports'].toLowerCase()).on('click', () => { location.href = caseLink(c); })))
      : L.layerGroup(view.grid.cells.map((c) => L.circleMarker([c.lat, c.lon], {
        className: 'cell', radius: 3 + 2.5 * Math.sqrt(c.reports), color: '#1f3b73', weight: 1,
        fillColor: '#3a6fd8', fillOpacity: 0.55,
      }).bindTooltip(T.map_cells + ' : ' + fmtNum(c.reports))));
    cellLayer.addTo(map);
    if (!map._fitted) {
      map.fitBounds(muniLayer.getBounds(), {padding: [8, 8]});
      map._fitted = true;
    }
    drawLegend(scale, indicator);
  }

  function drawLegend(scale, indicator) {
    const legend = document.getElementById('legend');
    const fmt = indicator === 'cross_share' ? fmtShare
      : indicator === 'per_1000' ? (v) => nf.format(Math.round(v * 10) / 10) : (v) => nf.format(v);
    const items = scale.colours.map((colour, i) => {
      const [lo, hi] = scale.bounds[i];
      const span = document.createElement('span');
      span.innerHTML = '<i style="background:' + colour + '"></i>';
      span.append(fmt(lo) === fmt(hi) ? fmt(lo) : fmt(lo) + ' – ' + fmt(hi));
      return span;
    });
    const none = document.createElement('span');
    none.innerHTML = '<i style="background:#d9d9d9"></i>';
    none.append(T.no_data);
    legend.replaceChildren(...items, none);
  }

  const dayFormat = new Intl.DateTimeFormat('fr-FR', {day: 'numeric', month: 'short', timeZone: 'UTC'});
  const dayLabel = (seconds) => dayFormat.format(new Date(seconds * 1000));

  function drawChart(id, series, prefix) {
    const el = document.getElementById(id);
    if (charts[id]) charts[id].destroy();
    const xs = view.days.map((d) => Date.parse(d + 'T12:00:00Z') / 1000);
    const keys = Object.keys(series);
    const shownKeys = keys.slice(0, MAX_SERIES);
    const data = [xs, ...shownKeys.map((k) => series[k])];
    const rest = keys.slice(MAX_SERIES);
    if (rest.length) data.push(xs.map((_, i) => rest.reduce((s, k) => s + series[k][i], 0)));
    const names = shownKeys.map((k) => label(prefix, k)).concat(rest.length ? [T.others] : []);
    const opts = {
      width: Math.max(320, el.clientWidth), height: 240,
      scales: {x: {time: true}, y: {range: (u, lo, hi) => [0, Math.max(1, hi)]}},
      // Ticks on whole days only: the series are daily counts.
      axes: [{values: (u, ticks) => ticks.map(dayLabel), incrs: DAY_STEPS, space: 60},
             {label: T.col_reports, values: (u, ticks) => ticks.map((v) => nf.format(v))}],
      series: [{label: T.col_day, value: (u, v) => (v === null ? '-' : dayLabel(v))}, ...names.map((n, i) => ({label: n, stroke: SERIES[i % SERIES.length], width: 2}))],
    };
    charts[id] = new uPlot(opts, data, el);
  }

  const caseLink = (c) => 'case?' + new URLSearchParams({id: c.id});

  // The cases of the map as a table: the keyboard's way to them.
  function renderCases() {
    const section = document.getElementById('cases-section');
    section.hidden = view.filter.show !== 'cases';
    const names = Object.fromEntries(view.municipalities.map((m) => [m.insee, m.name]));
    fillTable('cases-table', view.cases, (tr, c) => {
      tr.dataset.case = c.id;
      const first = document.createElement('td');
      const link = document.createElement('a');
      link.href = caseLink(c);
      link.textContent = label('cat_', c.category);
      first.append(link);
      tr.append(first, td(fmtNum(c.reports), 'reports'), td(c.municipalities.map((m) => names[m] || m).join(', ')),
        td(T['case.sev_' + c.severity] || c.severity),
        td(new Date(c.first_report_at).toLocaleString('fr-FR', {timeZone: 'Europe/Paris'})),
        td(c.acknowledged ? T['case.yes'] : T['case.no'], 'acknowledged'));
    });
  }

  function render() {
    renderCases();
    const selected = view.municipalities.filter((m) => m.selected);
    document.getElementById('kpi-reports').textContent = fmtNum(view.total);
    document.getElementById('kpi-open').textContent = fmtNum(selected.reduce((s, m) => s + m.open, 0));
    document.getElementById('kpi-cross').textContent = fmtShare(view.cross_boundary.share);
    document.getElementById('kpi-alerts').textContent = fmtNum(view.alerts.length);
    document.getElementById('kpi-handled').textContent =
      fmtNum(view.handled.last_7_days) + ' (' + fmtNum(view.handled.previous_7_days) + ')';
    fillTable('muni-table', selected, (tr, m) => {
      tr.dataset.insee = m.insee;
      tr.append(td(m.name + ' (' + m.insee + ')'), td(fmtNum(m.reports), 'reports'), td(fmtNum(m.open), 'open'),
        td(fmtNum(m.per_1000), 'per1000'), td(fmtNum(m.dispatches), 'dispatches'),
        td(fmtNum(m.cross_boundary), 'cross'), td(fmtShare(m.cross_share), 'share'));
    });
    fillTable('agency-table', view.cross_boundary.by_agency, (tr, a) => {
      tr.dataset.agency = a.agency_id;
      tr.append(td(a.name), td(fmtNum(a.dispatches), 'dispatches'), td(fmtNum(a.cross_boundary), 'cross'),
        td(fmtShare(a.share), 'share'));
    });
    document.getElementById('kpi-overdue').textContent =
      fmtNum(view.deadlines.rows.reduce((s, r) => s + r.open_overdue, 0));
    fillTable('deadline-table', view.deadlines.rows, (tr, r) => {
      tr.dataset.key = r.agency_id + '|' + r.category;
      tr.append(td(r.name), td(label('cat_', r.category)), td(fmtNum(r.with_deadline), 'dispatches'),
        td(fmtNum(r.not_acknowledged), 'not_acknowledged'), td(fmtNum(r.acknowledged_late), 'acknowledged_late'),
        td(fmtNum(r.open_overdue), 'open_overdue'), td(fmtNum(r.open_over_3x), 'open_over_3x'),
        td(fmtNum(r.resolved_late), 'resolved_late'));
    });
    fillTable('times-table', view.response_times, (tr, r) => {
      tr.dataset.agency = r.agency_id;
      tr.append(td(r.name), td(fmtNum(r.incidents), 'dispatches'), td(fmtNum(r.acknowledged), 'acknowledged'),
        td(fmtDuration(r.ack_p50_s), 'ack_p50'), td(fmtDuration(r.ack_p90_s), 'ack_p90'),
        td(fmtNum(r.resolved), 'resolved'), td(fmtDuration(r.resolve_p50_s), 'resolve_p50'),
        td(fmtDuration(r.resolve_p90_s), 'resolve_p90'));
    });
    const names = Object.fromEntries(view.municipalities.map((m) => [m.insee, m.name]));
    fillTable('alert-table', view.alerts, (tr, a) => {
      tr.dataset.state = a.state;
      tr.append(td(new Date(a.sent).toLocaleString('fr-FR', {timeZone: 'Europe/Paris'})), td(a.event),
        td(label('sev_', a.severity)), td(a.headline || ''), td(a.municipalities.map((c) => names[c] || c).join(', ')),
        td(label('alert_state_', a.state), 'state'));
    });
    renderDelivery();
    drawMap();
    drawChart('chart-category', view.by_category, 'cat_');
    drawChart('chart-channel', view.by_channel, 'ch_');
  }

  async function load(params, push) {
    const qs = params.toString();
    const suffix = qs ? '?' + qs : '';
    if (push) history.pushState(null, '', location.pathname + suffix);
    document.getElementById('export').href = 'export.csv' + suffix;
    statusLine.textContent = T.loading;
    document.body.dataset.ready = '';
    const resp = await fetch('api/view' + suffix);
    const body = await resp.json();
    if (!resp.ok) {
      statusLine.textContent = T.error_filter + ' : ' + body.error;
      return;
    }
    view = body;
    if (!params.get('from')) form.elements.from.value = view.period.from;
    if (!params.get('to')) form.elements.to.value = view.period.to;
    render();
    statusLine.textContent = T.updated;
    document.body.dataset.now = view.deadlines.now;
    document.body.dataset.ready = qs || 'default';
  }

  function updateReportLink() {
    const muni = document.getElementById('r-muni').value;
    const year = document.getElementById('r-year').value;
    document.getElementById('report-link').href = 'report?' + new URLSearchParams({municipality: muni, year});
  }

  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(readForm(), true); });
  form.addEventListener('change', (ev) => {
    if (ev.target.id === 'r-muni' || ev.target.id === 'r-year') { updateReportLink(); return; }
    load(readForm(), true);
  });
  document.getElementById('map-indicator').addEventListener('change', () => view && drawMap());
  window.addEventListener('popstate', () => {
    const params = new URLSearchParams(location.search);
    fillForm(params);
    load(params, false);
  });

  (async () => {
    const params = new URLSearchParams(location.search);
    fillForm(params);
    updateReportLink();
    geo = await (await fetch('api/territory')).json();
    await load(params, false);
  })();
}());
