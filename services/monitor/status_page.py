"""The status page served at `/`: one self-contained HTML document (no external CSS, fonts or
scripts; the machines it runs on may be offline). Its script reads /api/health, /api/alerts,
/api/operations and /api/traces every `REFRESH_MS` and redraws: the health gauge and sub-scores,
firing and pending alerts, per-service figures, the per-operation table and the latest traces as
a waterfall. Every value is written with textContent (span names and attributes come from
whoever exports to the monitor). Elements carry ids and data- attributes that tests read.
"""

from __future__ import annotations

REFRESH_MS = 2000

STATUS_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Doppelganger monitor</title>
<style>
  :root { --bg: #f4f5f7; --card: #fff; --ink: #1d2433; --muted: #6b7385; --line: #e3e6ec;
          --ok: #1f9d55; --warn: #d69e2e; --err: #e8590c; --crit: #c92a2a; --info: #3b82c4; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         background: var(--bg); color: var(--ink); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px;
           background: #1d2433; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header .meta { color: #aab3c5; font-size: 12px; margin-left: auto; }
  main { padding: 18px 24px; display: grid; gap: 18px;
         grid-template-columns: minmax(260px, 320px) 1fr; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 14px 16px; min-width: 0; }
  section h2 { margin: 0 0 10px; font-size: 13px; text-transform: uppercase;
               letter-spacing: .04em; color: var(--muted); }
  .wide { grid-column: 1 / -1; }
  .gauge { display: flex; flex-direction: column; align-items: center; }
  .gauge svg { width: 220px; height: 130px; }
  .gauge .value { font-size: 40px; font-weight: 700; margin-top: -62px; }
  .gauge .of { color: var(--muted); font-size: 12px; margin-bottom: 8px; }
  .subs { width: 100%; margin-top: 8px; }
  .sub { display: grid; grid-template-columns: 80px 1fr 44px; align-items: center; gap: 8px;
         margin: 5px 0; }
  .bar { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
  .bar > div { height: 100%; background: var(--ok); }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  .facts { color: var(--muted); font-size: 12px; margin-top: 10px; width: 100%; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
           white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; font-size: 12px; }
  td.n, th.n { text-align: right; }
  td.op { max-width: 360px; overflow: hidden; text-overflow: ellipsis; }
  td.msg { white-space: normal; min-width: 220px; }
  .sev { display: inline-block; padding: 1px 7px; border-radius: 10px; color: #fff;
         font-size: 11px; font-weight: 600; text-transform: uppercase; }
  .sev.info { background: var(--info); } .sev.warning { background: var(--warn); }
  .sev.error { background: var(--err); } .sev.critical { background: var(--crit); }
  .empty { color: var(--muted); font-style: italic; }
  .trace { margin-bottom: 14px; }
  .trace h3 { margin: 0 0 4px; font-size: 12px; font-weight: 600; color: var(--muted);
              font-family: ui-monospace, monospace; }
  .span { display: grid; grid-template-columns: 320px 1fr 70px; gap: 8px; align-items: center;
          font-size: 12px; height: 20px; }
  .span .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .span .svc { color: var(--muted); }
  .lane { position: relative; height: 12px; background: #f7f8fa; }
  .lane > div { position: absolute; top: 0; height: 12px; min-width: 2px; border-radius: 2px;
                background: #4c6ef5; }
  .lane > div.error { background: var(--crit); }
  #status.bad { color: #ffb4b4; }
</style>
</head>
<body data-loaded="0">
<header><h1>Doppelganger monitor</h1><span id="services" class="meta"></span>
<span class="meta">updated <span id="updated">never</span> &middot;
<span id="status">loading</span></span></header>
<main>
  <section class="gauge" id="health">
    <h2>Health</h2>
    <svg viewBox="0 0 200 110" aria-hidden="true">
      <path d="M15 100 A85 85 0 0 1 185 100" fill="none" stroke="#e3e6ec" stroke-width="18"/>
      <path id="gauge-arc" d="M15 100 A85 85 0 0 1 185 100" fill="none" stroke="#1f9d55"
            stroke-width="18" pathLength="100" stroke-dasharray="0 100"/>
    </svg>
    <div class="value" id="score">-</div>
    <div class="of">of 100</div>
    <div class="subs">
      <div class="sub"><span>errors</span><div class="bar"><div id="bar-errors"></div></div>
        <span class="num" id="sub-errors">-</span></div>
      <div class="sub"><span>alerts</span><div class="bar"><div id="bar-alerts"></div></div>
        <span class="num" id="sub-alerts">-</span></div>
      <div class="sub"><span>resources</span><div class="bar"><div id="bar-resources"></div>
        </div><span class="num" id="sub-resources">-</span></div>
      <div class="sub"><span>trends</span><div class="bar"><div id="bar-trends"></div></div>
        <span class="num" id="sub-trends">-</span></div>
    </div>
    <div class="facts">spans received <b id="spans-received">0</b>, dropped
      <b id="spans-dropped">0</b>, exporters dropped <b id="exporter-dropped">0</b>;
      window <span id="window">60</span> s</div>
  </section>
  <section>
    <h2>Alerts</h2>
    <table><thead><tr><th>severity</th><th>state</th><th>rule</th><th>service</th>
      <th>operation</th><th>message</th></tr></thead><tbody id="alerts"></tbody></table>
    <h2 style="margin-top:16px">Services</h2>
    <table><thead><tr><th>service</th><th class="n">RSS MB</th><th class="n">CPU</th>
      <th class="n">LLM calls/min</th><th class="n">tokens/min</th><th class="n">cache hit</th>
      </tr></thead><tbody id="service-stats"></tbody></table>
  </section>
  <section class="wide">
    <h2>Operations (last minute)</h2>
    <table><thead><tr><th>service</th><th>operation</th><th>kind</th><th class="n">calls</th>
      <th class="n">errors</th><th class="n">error rate</th><th class="n">p50 ms</th>
      <th class="n">p95 ms</th><th class="n">p99 ms</th><th class="n">per s</th></tr></thead>
      <tbody id="operations"></tbody></table>
  </section>
  <section class="wide">
    <h2>Latest traces</h2>
    <div id="traces"></div>
  </section>
</main>
<script>
"use strict";
const REFRESH_MS = __REFRESH_MS__;
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, className] of cells) tr.appendChild(el("td", text, className));
  return tr;
}

function fill(body, rows, columns, emptyText) {
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = el("td", emptyText, "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const r of rows) body.appendChild(r);
}

function colour(fraction) {
  return fraction >= 0.9 ? "#1f9d55" : fraction >= 0.7 ? "#d69e2e" : "#c92a2a";
}

const ms = (seconds) => (Number(seconds) * 1000).toFixed(1);
const duration = (nanos) => nanos >= 1e6 ? (nanos / 1e6).toFixed(1) + " ms"
                                         : (nanos / 1e3).toFixed(0) + " \u00b5s";
const pct = (x) => (Number(x) * 100).toFixed(1) + "%";
const SEVERITY = { SEVERITY_INFO: "info", SEVERITY_WARNING: "warning",
                   SEVERITY_ERROR: "error", SEVERITY_CRITICAL: "critical" };
const STATE = { ALERT_STATE_PENDING: "pending", ALERT_STATE_FIRING: "firing",
                ALERT_STATE_RESOLVED: "resolved" };

function drawHealth(h) {
  const score = Number(h.score);
  $("score").textContent = score.toFixed(1);
  const arc = $("gauge-arc");
  arc.setAttribute("stroke-dasharray", score.toFixed(1) + " 100");
  arc.setAttribute("stroke", colour(score / 100));
  for (const name of ["errors", "alerts", "resources", "trends"]) {
    const value = Number(h[name]);
    $("sub-" + name).textContent = value.toFixed(2);
    const bar = $("bar-" + name);
    bar.style.width = (value * 100).toFixed(0) + "%";
    bar.style.background = colour(value);
  }
  $("spans-received").textContent = h.spans_received;
  $("spans-dropped").textContent = h.spans_dropped;
  $("exporter-dropped").textContent = h.exporter_spans_dropped;
  $("window").textContent = h.window_seconds;
  $("services").textContent = (h.services || []).join(" \\u00b7 ");
  const stats = (h.service_stats || []).map((s) => {
    const tr = row([[s.service], [(Number(s.memory_rss_bytes) / 1048576).toFixed(0), "n"],
      [pct(s.cpu_utilization), "n"], [Number(s.llm_calls_per_minute).toFixed(1), "n"],
      [Number(s.tokens_per_minute).toFixed(0), "n"],
      [Number(s.cache_lookups) ? pct(s.cache_hit_rate) : "-", "n"]]);
    tr.dataset.service = s.service;
    return tr;
  });
  fill($("service-stats"), stats, 6, "no metrics yet");
}

function drawAlerts(alerts) {
  const active = alerts.filter((a) => a.state !== "ALERT_STATE_RESOLVED");
  const rows = active.map((a) => {
    const severity = SEVERITY[a.severity] || "info";
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.appendChild(el("span", severity, "sev " + severity));
    tr.appendChild(td);
    tr.append(el("td", STATE[a.state]), el("td", a.rule), el("td", a.service),
              el("td", a.operation, "op"), el("td", a.message, "msg"));
    tr.dataset.rule = a.rule;
    tr.dataset.severity = severity;
    tr.dataset.state = STATE[a.state];
    return tr;
  });
  fill($("alerts"), rows, 6, "no alerts");
}

function drawOperations(ops) {
  ops.sort((a, b) => Number(b.count) - Number(a.count));
  const rows = ops.map((o) => {
    const tr = row([[o.service], [o.operation, "op"], [o.kind], [o.count, "n"],
      [o.errors, "n"], [pct(o.error_rate), "n"], [ms(o.p50_seconds), "n"],
      [ms(o.p95_seconds), "n"], [ms(o.p99_seconds), "n"],
      [Number(o.throughput_per_second).toFixed(2), "n"]]);
    tr.dataset.service = o.service;
    tr.dataset.operation = o.operation;
    tr.dataset.count = o.count;
    tr.dataset.errors = o.errors;
    return tr;
  });
  fill($("operations"), rows, 10, "no traffic in the last minute");
}

function drawTraces(traces) {
  const box = $("traces");
  box.replaceChildren();
  if (!traces.length) box.appendChild(el("div", "no traces yet", "empty"));
  for (const t of traces) {
    const spans = t.spans.map((s) => ({ ...s, start: Number(s.start_unix_nano),
                                        end: Number(s.end_unix_nano) }));
    const t0 = Math.min(...spans.map((s) => s.start));
    const t1 = Math.max(...spans.map((s) => s.end));
    const total = Math.max(t1 - t0, 1);
    const depth = {};
    const byId = Object.fromEntries(spans.map((s) => [s.span_id, s]));
    const depthOf = (s, seen = 0) => {
      if (depth[s.span_id] !== undefined) return depth[s.span_id];
      const parent = byId[s.parent_span_id];
      const d = parent && seen < 64 ? depthOf(parent, seen + 1) + 1 : 0;
      depth[s.span_id] = d;
      return d;
    };
    const section = el("div", null, "trace");
    section.dataset.traceId = t.trace_id;
    section.appendChild(el("h3", t.trace_id + " \\u00b7 " + spans.length + " spans \\u00b7 " +
                           duration(total)));
    for (const s of spans) {
      const line = el("div", null, "span");
      line.dataset.service = s.service;
      line.dataset.name = s.name;
      const label = el("div", null, "label");
      label.style.paddingLeft = (depthOf(s) * 12) + "px";
      label.appendChild(el("span", s.service + " ", "svc"));
      label.appendChild(el("span", s.name));
      label.title = s.service + " " + s.name;
      const lane = el("div", null, "lane");
      const bar = el("div", null, s.error ? "error" : "");
      bar.style.left = ((s.start - t0) / total * 100).toFixed(2) + "%";
      bar.style.width = ((s.end - s.start) / total * 100).toFixed(2) + "%";
      lane.appendChild(bar);
      line.append(label, lane, el("div", duration(s.end - s.start), "num"));
      section.appendChild(line);
    }
    box.appendChild(section);
  }
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

async function refresh() {
  try {
    const [health, alerts, ops, traces] = await Promise.all([
      getJson("/api/health"), getJson("/api/alerts"),
      getJson("/api/operations?window=60"), getJson("/api/traces?limit=5")]);
    drawHealth(health);
    drawAlerts(alerts.alerts || []);
    drawOperations(ops.operations || []);
    drawTraces(traces.traces || []);
    $("updated").textContent = new Date().toLocaleTimeString();
    $("status").textContent = "live";
    $("status").className = "";
    document.body.dataset.loaded = "1";
  } catch (error) {
    $("status").textContent = "cannot reach the monitor (" + error.message + ")";
    $("status").className = "bad";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
"""
).replace("__REFRESH_MS__", str(REFRESH_MS))
