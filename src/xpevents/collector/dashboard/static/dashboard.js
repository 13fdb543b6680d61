// xpevents collector dashboard: polls /dashboard/feed and updates the page.
// Payload values only ever reach the DOM through textContent and setAttribute:
// no innerHTML anywhere in this file.
(function () {
  "use strict";
  var OUTCOMES = ["accepted", "duplicate", "rejected", "fault"];
  var CELLS = ["time", "type", "visitor", "experiment", "variation", "key", "amount", "client", "status"];
  var MAX_ROWS = 200;
  var SVG = "http://www.w3.org/2000/svg";
  var lastId = 0;
  var lastSeq = 0;
  var startedAt = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function filterParams() {
    var params = new URLSearchParams(window.location.search);
    var out = new URLSearchParams();
    ["visitor", "key", "experiment", "type", "status"].forEach(function (name) {
      var v = params.get(name);
      if (v) out.set(name, v);
    });
    return out;
  }

  function rowNode(row) {
    var tr = el("tr", row.type === "request" ? "request " + row.outcome : "event");
    CELLS.forEach(function (c) { tr.appendChild(el("td", c, row[c])); });
    var td = el("td");
    var details = el("details");
    details.appendChild(el("summary", null, "raw"));
    details.appendChild(el("pre", null, row.raw));
    td.appendChild(details);
    tr.appendChild(td);
    return tr;
  }

  function addRows(rows) {
    var body = document.getElementById("rows");
    for (var i = rows.length - 1; i >= 0; i--) {
      body.insertBefore(rowNode(rows[i]), body.firstChild);
    }
    while (body.children.length > MAX_ROWS) body.removeChild(body.lastChild);
  }

  function updateCounters(stats) {
    var values = Object.assign({}, stats);
    values.faults_total = Object.values(stats.faults || {}).reduce(function (a, b) { return a + b; }, 0);
    document.querySelectorAll("[data-stat]").forEach(function (node) {
      var v = values[node.getAttribute("data-stat")];
      node.textContent = String(v === undefined ? 0 : v);
    });
  }

  function drawChart(series) {
    var svg = document.getElementById("chart-svg");
    if (!svg) return;
    var w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
    var top = 1;
    series.forEach(function (p) { OUTCOMES.forEach(function (o) { top = Math.max(top, p[o]); }); });
    var step = w / Math.max(1, series.length - 1);
    OUTCOMES.forEach(function (o) {
      var line = svg.querySelector("polyline." + o);
      if (!line) { line = document.createElementNS(SVG, "polyline"); line.setAttribute("class", o); svg.appendChild(line); }
      var pts = series.map(function (p, i) {
        return (i * step).toFixed(1) + "," + (h - p[o] * (h - 4) / top).toFixed(1);
      });
      line.setAttribute("points", pts.join(" "));
    });
    var label = document.getElementById("chart-max");
    if (label) label.textContent = "max " + top + "/s";
  }

  function pct(x) { return x === null || x === undefined ? "" : (x * 100).toFixed(1) + "%"; }

  function experimentNode(s) {
    var box = el("div", "exp");
    box.setAttribute("data-experiment", s.key);
    var h = el("h3", null, s.key + " ");
    h.appendChild(el("span", "sub", s.experiment_id + " \u00b7 " + s.impressions + " impressions"));
    box.appendChild(h);
    var srm = s.srm;
    var verdict = srm && srm.mismatch ? "MISMATCH" : "ok";
    if (srm && srm.too_few && !srm.mismatch) verdict = "not yet testable (fewer than 5 impressions expected in a variation)";
    box.appendChild(srm
      ? el("p", srm.mismatch ? "srm-bad" : "srm-ok", "SRM " + verdict +
          ": chi-square " + srm.chi_square.toFixed(3) + ", dof " + srm.dof + ", p = " + Number(srm.p_value.toPrecision(3)))
      : el("p", "srm-none", "SRM check: needs the datafile (--datafile) and impressions"));
    var table = el("table");
    var head = el("tr");
    ["variation", "impressions", "split", "expected", "conversions", "revenue", "value"].forEach(function (t) {
      head.appendChild(el("th", null, t));
    });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    Object.keys(s.variations).forEach(function (id) {
      var v = s.variations[id];
      var tr = el("tr");
      tr.appendChild(el("td", null, v.key));
      [v.impressions, pct(v.share), pct(v.expected_share), v.conversions, v.revenue,
       Math.round(v.value * 10000) / 10000].forEach(function (x) { tr.appendChild(el("td", "num", x)); });
      body.appendChild(tr);
    });
    box.appendChild(table);
    return box;
  }

  function drawExperiments(list) {
    var target = document.getElementById("experiments");
    while (target.firstChild) target.removeChild(target.firstChild);
    if (!list.length) { target.appendChild(el("p", null, "No impressions yet.")); return; }
    list.forEach(function (s) { target.appendChild(experimentNode(s)); });
  }

  function table(headers, rows) {
    var t = el("table");
    var head = el("tr");
    headers.forEach(function (h) { head.appendChild(el("th", null, h)); });
    var thead = el("thead");
    thead.appendChild(head);
    t.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (cells) {
      var tr = el("tr", "warning");
      cells.forEach(function (c) { tr.appendChild(el("td", null, c)); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }

  function drawWarnings(mode, stats) {
    var target = document.getElementById("warnings");
    var byPath = stats.schema_warnings || {};
    var paths = Object.keys(byPath);
    if (mode === "off" || !paths.length) return;  // the server-rendered note stays
    while (target.firstChild) target.removeChild(target.firstChild);
    var verb = mode === "refuse" ? "refused" : "accepted";
    target.appendChild(el("p", "warning-note", "strict mode " + mode +
      ": payloads deviate from the Event API (an SDK bug to report; the events were " + verb + ")"));
    paths.sort(function (a, b) { return byPath[b] - byPath[a]; });
    target.appendChild(table(["path", "count"], paths.map(function (p) { return [p, byPath[p]]; })));
    var recent = (stats.recent_schema_warnings || []).slice().reverse();
    target.appendChild(table(["path", "error", "client"], recent.map(function (w) {
      return [w.path, w.error, w.client];
    })));
  }

  function poll() {
    var params = filterParams();
    params.set("after", String(lastId));
    params.set("after_seq", String(lastSeq));
    fetch("/dashboard/feed?" + params.toString(), { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        if (startedAt !== null && data.started_at !== startedAt) {
          // POST /reset: ids start over; forget the table and fetch everything again.
          startedAt = data.started_at;
          lastId = 0;
          lastSeq = 0;
          var body = document.getElementById("rows");
          while (body.firstChild) body.removeChild(body.firstChild);
          poll();
          return;
        }
        startedAt = data.started_at;
        data.rows.forEach(function (r) {
          if (r.id && r.id > lastId) lastId = r.id;
          if (r.seq && r.seq > lastSeq) lastSeq = r.seq;
        });
        if (data.rows.length) addRows(data.rows);
        updateCounters(data.stats);
        drawChart(data.series);
        drawExperiments(data.experiments);
        drawWarnings(data.strict, data.stats);
        document.getElementById("live").textContent = "(live)";
      })
      .catch(function () { document.getElementById("live").textContent = "(collector unreachable, retrying)"; });
  }

  function start() {
    // The rows the server rendered are replaced by the first poll (same data, live from then on).
    var body = document.getElementById("rows");
    while (body.firstChild) body.removeChild(body.firstChild);
    poll();
    setInterval(poll, +document.body.getAttribute("data-poll-ms") || 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
