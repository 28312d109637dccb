/* The ops page: dead letters by reason, unroutable events over time and the quarantined sources (from Prometheus, through
   /console/api/ops); the period lives in the URL (?hours=). */
(function () {
  'use strict';
  const T = JSON.parse(document.getElementById('texts').textContent);
  const statusLine = document.getElementById('status');
  const select = document.getElementById('f-hours');
  const nf = new Intl.NumberFormat('fr-FR', {maximumFractionDigits: 1});
  const COLORS = ['#e15759', '#4e79a7', '#f28e2b', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#9c755f'];
  const timeFormat = new Intl.DateTimeFormat('fr-FR', {day: 'numeric', month: 'short', hour: '2-digit',
                                                       minute: '2-digit', timeZone: 'Europe/Paris'});
  const tickFormat = new Intl.DateTimeFormat('fr-FR', {hour: '2-digit', minute: '2-digit', timeZone: 'Europe/Paris'});
  const charts = {};

  function draw(id, xs, series) {
    const el = document.getElementById(id);
    if (charts[id]) charts[id].destroy();
    const keys = Object.keys(series);
    const opts = {
      width: Math.max(320, el.clientWidth), height: 220,
      scales: {x: {time: true}, y: {range: (u, lo, hi) => [0, Math.max(1, hi)]}},
      axes: [{values: (u, ticks) => ticks.map((t) => tickFormat.format(new Date(t * 1000))), space: 70},
             {values: (u, ticks) => ticks.map((v) => nf.format(v))}],
      series: [{label: T.col_time, value: (u, v) => (v === null ? '-' : timeFormat.format(new Date(v * 1000)))},
               ...keys.map((k, i) => ({label: k === 'total' ? T.ops_unroutable : k,
                                       stroke: COLORS[i % COLORS.length], width: 2}))],
    };
    charts[id] = new uPlot(opts, [xs, ...keys.map((k) => series[k])], el);
  }

  async function load(push) {
    const params = new URLSearchParams({hours: select.value});
    if (push) history.pushState(null, '', location.pathname + '?' + params);
    document.body.dataset.ready = '';
    statusLine.textContent = T.loading;
    const resp = await fetch('api/ops?' + params);
    const body = await resp.json();
    if (!resp.ok) {
      statusLine.textContent = T.ops_unavailable + ' : ' + body.error;
      document.body.dataset.ready = 'unavailable';
      return;
    }
    draw('chart-router', body.timestamps, body.router_dead_letters);
    draw('chart-unroutable', body.timestamps, body.unroutable);
    draw('chart-sink', body.timestamps, body.sink_dead_letters);
    const rows = [];
    for (const [source, label] of [['router_dead_letters', T.ops_router], ['unroutable', T.ops_unroutable],
                                   ['sink_dead_letters', T.ops_sink]]) {
      for (const [reason, total] of Object.entries(body.totals[source])) {
        const tr = document.createElement('tr');
        tr.dataset.source = source;
        tr.dataset.reason = reason;
        for (const text of [label, reason === 'total' ? '-' : reason, nf.format(total)]) {
          const td = document.createElement('td');
          td.textContent = text;
          tr.append(td);
        }
        rows.push(tr);
      }
    }
    document.querySelector('#ops-totals tbody').replaceChildren(...rows);
    const now = new Set(body.quarantined_now);
    const sources = Object.keys(body.totals.quarantined);
    for (const source of now) if (!sources.includes(source)) sources.push(source);
    const quarantine = sources.sort().map((source) => {
      const tr = document.createElement('tr');
      tr.dataset.source = source;
      for (const text of [source, nf.format(body.totals.quarantined[source] || 0),
                          now.has(source) ? T.yes : T.no]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    document.querySelector('#ops-quarantine tbody').replaceChildren(...quarantine);
    document.getElementById('ops-quarantine-none').hidden = quarantine.length > 0;
    statusLine.textContent = T.updated;
    document.body.dataset.ready = String(body.hours);
  }

  select.value = new URLSearchParams(location.search).get('hours') || '24';
  select.addEventListener('change', () => load(true));
  window.addEventListener('popstate', () => {
    select.value = new URLSearchParams(location.search).get('hours') || '24';
    load(false);
  });
  load(false);
}());
