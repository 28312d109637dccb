/* The agencies' desk: the map (no tiles), the inbox's updates, actions with an offline queue.
 *
 * Updates by polling, not server-sent events: every 15 s the page asks for its rows again
 * (same filters). A tablet in a van loses and regains signal all day; a poll simply works
 * again at the next tick, through any proxy, with no long-lived connection held per tablet on
 * the intake's event loop (which also serves every publisher), and reading the in-memory read
 * model costs a few milliseconds. A dispatch waits at most 15 s to appear, well inside the
 * shortest acknowledgement deadline (hours).
 *
 * An action gets an id here (action_id); the queue re-sends it with that id, and the intake
 * publishes an action id once, so an action sent twice is counted once. */
"use strict";

(function () {
  var data = JSON.parse(document.getElementById("desk-data").textContent);
  var form = document.getElementById("selection");
  var rows = document.getElementById("rows");
  var mapEl = document.getElementById("map");

  function uuid4() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.from(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  /* ------------------------------------------------------------ map */
  var map = null, points = null, picked = null;
  if (mapEl && window.L) {
    map = L.map("map", {keyboard: true, zoomSnap: 0.5, attributionControl: false});
    window.deskMap = map;  // for the browser tests
    points = L.layerGroup().addTo(map);
    map.setView([48.1, -1.7], 10);
    fetch(data.zone, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (geo) {
      var towns = L.geoJSON({type: "FeatureCollection", features: geo.features.filter(function (f) { return f.properties.kind === "town"; })},
        {style: {color: "#6b7280", weight: 1, fillOpacity: 0.05}, interactive: false}).addTo(map);
      var areas = L.geoJSON({type: "FeatureCollection", features: geo.features.filter(function (f) { return f.properties.kind === "area"; })},
        {style: {color: "#1d4ed8", weight: 3, fillOpacity: 0.15}, interactive: false}).addTo(map);
      var target = areas.getLayers().length ? areas : towns;
      if (target.getLayers().length) { map.fitBounds(target.getBounds(), {padding: [10, 10]}); }
      plot();
    });
    map.on("click", function (e) { pick(e.latlng); });
    // Keyboard: arrows move the map, Enter picks its centre (as on the relays' form).
    mapEl.addEventListener("keydown", function (e) {
      if ((e.key === "Enter" || e.key === " ") && form && rejecting()) { e.preventDefault(); pick(map.getCenter()); }
    });
  }

  function plot() {
    if (!points) { return; }
    points.clearLayers();
    var found = [];
    if (rows) {
      rows.querySelectorAll("tr[data-id]").forEach(function (tr) {
        if (tr.dataset.lat && tr.dataset.lon) { found.push([+tr.dataset.lat, +tr.dataset.lon]); }
      });
    } else if (mapEl.dataset.lat && mapEl.dataset.lon) {
      found.push([+mapEl.dataset.lat, +mapEl.dataset.lon]);
      map.setView(found[0], 14);
    }
    // A case's page: its reports' latest positions too, smaller (docs/grouping.md).
    var others = mapEl && !rows && mapEl.dataset.positions ? JSON.parse(mapEl.dataset.positions) : [];
    others.forEach(function (p) {
      L.circleMarker(p, {radius: 5, weight: 1, color: "#1d4ed8", fillOpacity: 0.6, interactive: false}).addTo(points);
    });
    found.forEach(function (p) {
      L.circleMarker(p, {radius: 8, weight: 2, color: "#b3261e", fillOpacity: 0.7, interactive: false}).addTo(points);
    });
  }

  /* A corrected place for "pas de notre ressort": a click on the map fills latitude and longitude. */
  function pick(latlng) {
    if (!form || !rejecting()) { return; }
    form.querySelector("[data-lat]").value = latlng.lat.toFixed(6);
    form.querySelector("[data-lon]").value = latlng.lng.toFixed(6);
    if (picked) { map.removeLayer(picked); }
    picked = L.circleMarker(latlng, {radius: 10, weight: 3, color: "#1d4ed8", fillOpacity: 0.4}).addTo(map);
  }

  /* ------------------------------------------------------------ action form */
  function rejecting() {
    var checked = form.querySelector("input[name=status]:checked");
    return checked && checked.value === "rejected";
  }

  function showReject() {
    var block = form.querySelector("[data-reject]");
    block.hidden = !rejecting();
    form.querySelector("select[name=reason]").required = rejecting();
  }

  var result = form && form.querySelector("[data-result]");
  var queueNote = form && form.querySelector("[data-queue]");

  function say(message, bad) {
    result.textContent = message;
    result.className = "result" + (bad ? " bad" : " ok");
  }

  async function send(entry) {
    var body = new URLSearchParams(entry.body);
    body.set("csrf_token", form.elements.csrf_token.value);  // the page's current token
    var response;
    try {
      response = await fetch(form.action, {method: "POST", body: body, credentials: "same-origin",
                                           headers: {"Accept": "application/json"}});
    } catch (e) {
      return {done: false};
    }
    if (response.status === 503 || response.status >= 500) { return {done: false}; }
    var answer = {};
    try { answer = await response.json(); } catch (e) { answer = {}; }
    if (response.ok) {
      say(answer.message || "", false);
      refresh();
    } else {
      var errors = answer.errors || {};
      say(Object.keys(errors).map(function (k) { return errors[k]; }).join(" ") || data.texts.unreachable, true);
    }
    return {done: true, ok: response.ok, answer: answer};  // a refusal is not re-sent
  }

  var queue = window.RelayQueue ? new window.RelayQueue("agence." + data.login, send) : null;
  if (queue) {
    queue.onChange(function (count) {
      queueNote.hidden = count === 0;
      queueNote.textContent = data.texts.queued.replace("{count}", count);
    });
  }

  if (form) {
    form.addEventListener("change", function (e) { if (e.target.name === "status") { showReject(); } });
    showReject();
    form.addEventListener("submit", async function (e) {
      if (!queue) { return; }  // no script support for the queue: the plain form posts
      e.preventDefault();
      var idField = form.querySelector("[data-action-id]");
      idField.value = uuid4();
      var entry = {id: idField.value, body: new URLSearchParams(new FormData(form)).toString()};
      say(data.texts.sending, false);
      var outcome = await send(entry);
      if (!outcome.done) {
        queue.add(entry);
        say(data.texts.queued.replace("{count}", queue.entries().length), true);
      } else if (outcome.ok && !rows) {
        var status = new URLSearchParams(entry.body).get("status");
        window.location.assign(window.location.pathname + "?fait=" + encodeURIComponent(status));
      }
    });
    if (queue) { queue.start(5000); }
  }

  /* ------------------------------------------------------------ inbox updates (polling) */
  async function refresh() {
    if (!rows) { return; }
    var checked = new Set(Array.from(rows.querySelectorAll("input[name=dispatch]:checked"), function (i) { return i.value; }));
    var focused = document.activeElement && rows.contains(document.activeElement) ? document.activeElement.id : null;
    try {
      var response = await fetch(rows.dataset.source, {credentials: "same-origin", headers: {"Accept": "text/html"}});
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) { return; }
      rows.innerHTML = await response.text();
    } catch (e) {
      return;  // offline: the next tick tries again
    }
    rows.querySelectorAll("input[name=dispatch]").forEach(function (i) { i.checked = checked.has(i.value); });
    if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
    plot();
  }
  window.deskRefresh = refresh;  // for the browser tests
  var all = document.getElementById("select-all");
  if (all && rows) {
    all.hidden = false;  // only with the script that makes it work
    all.addEventListener("change", function () {
      rows.querySelectorAll("input[name=dispatch]").forEach(function (i) { i.checked = all.checked; });
    });
  }
  if (rows) { setInterval(refresh, 15000); }
})();
