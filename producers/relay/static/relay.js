/* The relays' form: category search, the photo, the territory map, sending with the offline queue,
 * field errors next to their field, and the statuses of the reports sent from here. */
"use strict";

(function () {
  var config = JSON.parse(document.getElementById("relay-config").textContent);
  var T = config.texts;
  var form = document.getElementById("report");
  var submit = document.getElementById("submit");

  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; });
  }

  function uuid4() {  // crypto.randomUUID needs a secure context; a town hall's intranet may not be one
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.from(b, function (x) { return x.toString(16).padStart(2, "0"); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function localNow() {  // the territory's civil time, whatever the device's time zone
    var parts = {};
    new Intl.DateTimeFormat("fr-FR", {timeZone: config.timezone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23"}).formatToParts(new Date())
      .forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + "T" + parts.hour + ":" + parts.minute;
  }

  function reference(id) {
    var s = id.replace(/-/g, "").slice(0, 8).toUpperCase();
    return s.slice(0, 4) + "-" + s.slice(4);
  }

  /* ------------------------------------------------------------ category search */
  var search = document.getElementById("category-search");
  var select = document.getElementById("category");
  var count = document.getElementById("category-count");

  function normalise(s) {
    return s.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[œ]/g, "oe");
  }

  function stem(word) {  // "lampadaires" finds "lampadaire", "tags" finds "tag"
    return word.length > 3 ? word.replace(/[sx]$/, "") : word;
  }

  /* The list is rebuilt with the matching types only: hiding <option>s is not enough, phones'
   * and tablets' pickers (iOS, Android) show hidden options all the same. */
  var placeholder = select.querySelector('option[value=""]');
  var catalogue = Array.from(select.querySelectorAll("optgroup")).map(function (g) {
    return {label: g.label, options: Array.from(g.querySelectorAll("option")).map(function (o) {
      return {value: o.value, text: o.textContent,
              hay: normalise(o.textContent + " " + (config.keywords[o.value] || ""))};
    })};
  });
  var total = catalogue.reduce(function (n, g) { return n + g.options.length; }, 0);

  function narrow() {
    var words = normalise(search.value).split(/[\s,;.'\u2019-]+/).filter(Boolean).map(stem);
    var current = select.value, shown = [], fallback = null;
    select.textContent = "";
    select.appendChild(placeholder);
    catalogue.forEach(function (g) {
      var matches = g.options.filter(function (o) {
        return words.every(function (w) { return o.hay.indexOf(w) >= 0; });
      });
      g.options.forEach(function (o) { if (o.value === "other") { fallback = {group: g, option: o}; } });
      if (!matches.length) { return; }
      var group = document.createElement("optgroup");
      group.label = g.label;
      matches.forEach(function (o) {
        var opt = document.createElement("option");
        opt.value = o.value; opt.textContent = o.text;
        group.appendChild(opt); shown.push(o.value);
      });
      select.appendChild(group);
    });
    if (!shown.length && fallback) {  // nothing matches: "Autre signalement" stays to be chosen
      var g = document.createElement("optgroup"), opt = document.createElement("option");
      g.label = fallback.group.label; opt.value = fallback.option.value; opt.textContent = fallback.option.text;
      g.appendChild(opt); select.appendChild(g);
    }
    if (shown.indexOf(current) >= 0 || !words.length) { select.value = current; }
    else { select.value = shown.length ? shown[0] : ""; }
    count.textContent = !words.length ? "" : shown.length ? fmt(T.category_count, {shown: shown.length, total: total})
      : T.category_no_match;
  }
  search.addEventListener("input", narrow);

  /* ------------------------------------------------------------ photo */
  var photoInput = form.elements.photo || null;
  var preview = document.getElementById("photo-preview");
  var chosen = null;  // {file, name, type, dataUrl}
  var ACCEPTED = ["image/jpeg", "image/png", "image/webp", "image/gif"];

  function clearPhoto() {
    chosen = null;
    if (photoInput) { photoInput.value = ""; }
    if (preview) { preview.hidden = true; document.getElementById("photo-preview-img").removeAttribute("src"); }
  }

  if (photoInput) {
    photoInput.addEventListener("change", function () {
      setError("photo", "");
      var file = photoInput.files && photoInput.files[0];
      chosen = null; preview.hidden = true;
      if (!file) { return; }
      var mb = function (n) {
        return n < 1048576 ? Math.max(1, Math.round(n / 1024)) + " Ko"
          : (n / 1048576).toLocaleString("fr-FR", {maximumFractionDigits: 1}) + " Mo";
      };
      if (file.size > config.photo_max_bytes) {
        setError("photo", fmt(T["error.photo_too_large"], {size: mb(file.size), limit: mb(config.photo_max_bytes)}));
        photoInput.value = ""; return;
      }
      if (file.type && ACCEPTED.indexOf(file.type) < 0) {  // a hint only: the intake decides by content
        setError("photo", T["error.photo_type"]); photoInput.value = ""; return;
      }
      var reader = new FileReader();
      reader.onload = function () {
        chosen = {file: file, name: file.name, type: file.type, dataUrl: reader.result};
        document.getElementById("photo-preview-img").src = reader.result;
        document.getElementById("photo-status").textContent = fmt(T.photo_chosen, {name: file.name, size: mb(file.size)});
        preview.hidden = false;
      };
      reader.readAsDataURL(file);
    });
    document.getElementById("photo-remove").addEventListener("click", function () {
      clearPhoto(); photoInput.focus();
    });
  }

  function blobOf(kept) {  // a photo kept in localStorage (data URL) back into a file to send
    var parts = kept.dataUrl.split(","), bytes = atob(parts[1]), out = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { out[i] = bytes.charCodeAt(i); }
    return new Blob([out], {type: kept.type || "application/octet-stream"});
  }

  /* ------------------------------------------------------------ map */
  var lat = form.elements.lat, lon = form.elements.lon;
  var municipality = form.elements.municipality;
  var status = document.getElementById("place-status");
  var clear = document.getElementById("place-clear");
  var map = L.map("map", {keyboard: true, zoomSnap: 0.5, attributionControl: false});
  var marker = null, towns = null;
  window.relayMap = map;  // for the browser tests, which click on given coordinates

  function showPlace(latlng, feature) {
    if (marker) { marker.setLatLng(latlng); } else {
      marker = L.circleMarker(latlng, {radius: 10, weight: 3, color: "#b3261e", fillOpacity: 0.6}).addTo(map);
    }
    lat.value = latlng.lat.toFixed(6); lon.value = latlng.lng.toFixed(6);
    status.textContent = fmt(T.place_set, {town: feature.properties.name,
      lat: latlng.lat.toFixed(5), lon: latlng.lng.toFixed(5)});
    clear.hidden = false;
    setError("place", "");
  }

  function place(latlng) {
    var hit = null;
    towns.eachLayer(function (layer) {
      if (!hit && layer.getBounds().contains(latlng) && inside(latlng, layer.feature.geometry)) { hit = layer.feature; }
    });
    if (!hit) { setError("place", T.place_outside); return; }
    if (!hit.properties.mine) { setError("place", fmt(T.place_other_town, {town: hit.properties.name})); return; }
    municipality.value = hit.properties.insee;
    showPlace(latlng, hit);
  }

  function inside(latlng, geometry) {  // ray casting over the polygon's rings (GeoJSON: lon, lat)
    var polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    return polys.some(function (rings) {
      var odd = false;
      rings.forEach(function (ring) {
        for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
          var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
          if ((yi > latlng.lat) !== (yj > latlng.lat) &&
              latlng.lng < (xj - xi) * (latlng.lat - yi) / (yj - yi) + xi) { odd = !odd; }
        }
      });
      return odd;
    });
  }

  clear.addEventListener("click", function () {
    if (marker) { map.removeLayer(marker); marker = null; }
    lat.value = ""; lon.value = ""; status.textContent = T.place_none; clear.hidden = true;
    map.getContainer().focus();
  });

  fetch(config.territory, {headers: {Accept: "application/json"}, credentials: "same-origin"})
    .then(function (r) { return r.json(); })
    .then(function (geojson) {
      towns = L.geoJSON(geojson, {
        style: function (f) {
          return f.properties.mine ? {color: "#1d4ed8", weight: 2, fillColor: "#93c5fd", fillOpacity: 0.35}
                                   : {color: "#6b7280", weight: 1, fillColor: "#d1d5db", fillOpacity: 0.4};
        },
        onEachFeature: function (f, layer) { layer.bindTooltip(f.properties.name, {sticky: true}); }
      }).addTo(map);
      var mine = L.featureGroup(towns.getLayers().filter(function (l) { return l.feature.properties.mine; }));
      map.fitBounds((mine.getLayers().length ? mine : towns).getBounds(), {padding: [10, 10]});
      if (lat.value && lon.value) { place(L.latLng(+lat.value, +lon.value)); }
    });
  map.on("click", function (e) { place(e.latlng); });
  map.getContainer().addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); place(map.getCenter()); }
  });

  /* ------------------------------------------------------------ errors next to fields */
  function setError(name, message) {
    var p = form.querySelector('[data-error-for="' + name + '"]') ||
            document.querySelector('[data-error-for="' + name + '"]');
    if (!p) { return; }
    p.textContent = message; p.hidden = !message;
    var input = name === "place" ? document.getElementById("map") : form.elements[name];
    if (input && input.setAttribute) {
      if (message) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
      var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (i) { return i && i !== p.id; });
      if (message) { ids.push(p.id); }
      if (ids.length) { input.setAttribute("aria-describedby", ids.join(" ")); }
      if (input.closest) { var f = input.closest(".field"); if (f) { f.classList.toggle("invalid", !!message); } }
    }
  }

  var labels = {place: T.section_where};
  Array.from(form.querySelectorAll("label[for]")).forEach(function (l) {
    labels[l.htmlFor] = l.textContent.replace(/\s*\*\s*$/, "");
  });
  labels.consent = T.section_contact;

  function showErrors(errors) {
    form.querySelectorAll("[data-error-for]").forEach(function (p) { setError(p.dataset.errorFor, ""); });
    var summary = document.getElementById("summary");
    var list = summary.querySelector("ul");
    list.textContent = "";
    Object.keys(errors).forEach(function (name) {
      setError(name, errors[name]);
      var li = document.createElement("li"), a = document.createElement("a");
      a.href = "#" + (name === "place" ? "map" : name);
      a.textContent = (labels[name] ? labels[name] + " : " : "") + errors[name];
      li.appendChild(a); list.appendChild(li);
    });
    summary.hidden = !Object.keys(errors).length;
    if (!summary.hidden) { summary.focus(); }
  }

  /* ------------------------------------------------------------ sending */
  var sent = document.getElementById("sent");
  var queueBox = document.getElementById("queue");

  function fields() {  // the text fields; the photo travels apart (a File does not fit in JSON)
    return Array.from(new FormData(form).entries()).filter(function (kv) { return kv[0] !== "photo"; });
  }

  async function post(entries, photo) {
    // With a photo: multipart (the photo last, after the fields it goes with); without: as before.
    var body = photo ? new FormData() : new URLSearchParams();
    entries.forEach(function (kv) {
      // The page's current token: a report kept offline may predate this session.
      body.append(kv[0], kv[0] === "csrf_token" ? form.elements.csrf_token.value : kv[1]);
    });
    if (photo) { body.append("photo", photo.blob, photo.name || "photo"); }
    var resp = await fetch(config.send, {method: "POST", body: body, credentials: "same-origin",
                                         headers: {Accept: "application/json"}});
    var data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    return {status: resp.status, data: data};
  }

  function remember(id, ref) {
    var key = "veille.relais.sent." + config.login;
    var list = JSON.parse(localStorage.getItem(key) || "[]").filter(function (e) { return e.id !== id; });
    list.unshift({id: id, reference: ref, at: new Date().toISOString()});
    localStorage.setItem(key, JSON.stringify(list.slice(0, 20)));
    renderHistory();
  }

  function announceSent(ref, text, title, note, data) {
    sent.textContent = "";
    var h = document.createElement("h2"); h.textContent = title || T.sent_title;
    var p = document.createElement("p"); p.className = "reference"; p.textContent = text || fmt(T.sent_reference, {reference: ref});
    sent.appendChild(h); sent.appendChild(p);
    if (note) { var n = document.createElement("p"); n.textContent = note; sent.appendChild(n); }
    if (data && data.tracking_reference) {  // the public tracking page's reference, for the resident
      var t = document.createElement("p");
      t.textContent = fmt(T.sent_tracking, {reference: data.tracking_reference, url: data.tracking_url});
      sent.appendChild(t);
    }
    sent.hidden = false;
  }

  function resetForm() {
    var keep = {csrf_token: form.elements.csrf_token.value, municipality: municipality.value};
    form.reset();
    form.elements.csrf_token.value = keep.csrf_token;
    form.elements.report_id.value = uuid4();
    municipality.value = keep.municipality;
    form.elements.occurred_at.value = localNow();
    clearPhoto();
    select.value = "";
    search.dispatchEvent(new Event("input"));
    if (marker) { map.removeLayer(marker); marker = null; }
    lat.value = ""; lon.value = ""; status.textContent = T.place_none; clear.hidden = true;
  }

  var queue = new RelayQueue(config.login, async function (entry) {
    var outcome;
    var photo = entry.photo ? {blob: blobOf(entry.photo), name: entry.photo.name} : null;
    try { outcome = await post(entry.fields, photo); } catch (e) { return {done: false}; }
    if (outcome.status === 201) {
      remember(entry.id, outcome.data.reference);
      queueBox.textContent = fmt(T.queue_sent, {reference: outcome.data.reference});
      queueBox.hidden = false;
      return {done: true};
    }
    if (outcome.status === 401) { queueBox.textContent = T.session_expired; queueBox.hidden = false; }
    if (outcome.status >= 500 || outcome.status === 401 || outcome.status === 429) { return {done: false}; }
    // Refused for good (invalid, another town): back into the form to be corrected.
    restore(entry.fields); showErrors(outcome.data.errors || {});
    return {done: true};
  });
  queue.onChange(function (n) {
    if (n) { queueBox.textContent = fmt(T.queue_count, {count: n}); queueBox.hidden = false; }
  });

  function restore(entries) {
    entries.forEach(function (kv) {
      var el = form.elements[kv[0]];
      if (!el || kv[0] === "csrf_token" || el.type === "file") { return; }
      if (el.type === "checkbox") { el.checked = true; } else { el.value = kv[1]; }
    });
  }

  /* What can be checked here is checked before anything is sent or kept: a report queued
   * offline must not turn out, an hour later, to lack its description. The intake checks all. */
  function missing() {
    var out = {}, el = form.elements;
    if (!select.value) { out.category = T["error.category"]; }
    if (!el.description.value.trim()) { out.description = T["error.required"]; }
    if (!el.occurred_at.value) { out.occurred_at = T["error.occurred_at"]; }
    var contact = ["contact_name", "contact_phone", "contact_email"].some(function (n) { return el[n].value.trim(); });
    if (contact && !el.consent.checked) { out.consent = T["error.consent"]; }
    return out;
  }

  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    if (submit.disabled) { return; }
    var local = missing();
    if (Object.keys(local).length) { showErrors(local); return; }
    var entries = fields(), id = form.elements.report_id.value, photo = chosen;
    submit.disabled = true; submit.textContent = T.sending;

    function keep() {  // into the offline queue, with the photo if this device can hold it
      var entry = {id: id, fields: entries, queued_at: new Date().toISOString()};
      if (photo) {
        try {
          queue.add(Object.assign({}, entry, {photo: {name: photo.name, type: photo.type, dataUrl: photo.dataUrl}}));
          return T.photo_queued;
        } catch (e) { /* over this browser's storage quota: without it, and said so */ }
      }
      queue.add(entry);
      return photo ? T.photo_not_kept : "";
    }

    try {
      var outcome;
      try { outcome = await post(entries, photo ? {blob: photo.file, name: photo.name} : null); }
      catch (err) { outcome = null; }
      if (outcome && outcome.status === 201) {
        showErrors({}); remember(id, outcome.data.reference);
        announceSent(outcome.data.reference, null, null, "", outcome.data); resetForm(); sent.focus();
      } else if (!outcome || outcome.status >= 500 || outcome.status === 429) {
        var note = keep();
        showErrors({});
        announceSent(reference(id), fmt(T.queued, {reference: reference(id)}), T.queued_title, note);
        remember(id, reference(id)); resetForm(); sent.focus();
      } else if (outcome.status === 401) {
        keep();
        window.location.assign(config.send.replace(/signalements$/, "connexion"));
      } else {
        showErrors(outcome.data.errors || {});
      }
    } finally {
      submit.disabled = false; submit.textContent = T.submit;
    }
  });
  sent.tabIndex = -1;

  /* ------------------------------------------------------------ history and statuses */
  var history = document.getElementById("history");

  function renderHistory(statuses) {
    var list = JSON.parse(localStorage.getItem("veille.relais.sent." + config.login) || "[]");
    var waiting = queue ? queue.entries().map(function (e) { return e.id; }) : [];
    history.textContent = "";
    if (!list.length) {
      var li = document.createElement("li"); li.textContent = T.history_empty; history.appendChild(li); return;
    }
    list.forEach(function (e) {
      var li = document.createElement("li");
      var when = new Date(e.at).toLocaleString("fr-FR", {dateStyle: "short", timeStyle: "short"});
      var state = waiting.indexOf(e.id) >= 0 ? T.history_waiting : ((statuses && statuses[e.id]) || "");
      li.textContent = e.reference + " · " + when + (state ? " · " + state : "");
      li.dataset.id = e.id;
      history.appendChild(li);
    });
  }

  async function refreshStatuses() {
    var list = JSON.parse(localStorage.getItem("veille.relais.sent." + config.login) || "[]");
    var statuses = {};
    for (const e of list) {
      try {
        var r = await fetch(config.status + encodeURIComponent(e.id), {headers: {Accept: "application/json"}});
        if (r.ok) { statuses[e.id] = (await r.json()).label; }
      } catch (err) { break; }
    }
    renderHistory(statuses);
  }
  document.getElementById("history-refresh").addEventListener("click", refreshStatuses);

  queue.start(5000);
  refreshStatuses();
})();
