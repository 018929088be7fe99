// Orchard dashboard: polls the coordinator's JSON API and draws inline SVG. No dependencies.
// Every string from the API reaches the page through textContent or setAttribute (el()), never
// through innerHTML, so a device id or a rollback reason cannot inject markup.
"use strict";

const POLL_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2d7dd2", "#e4572e", "#3a8a2e", "#a259c4", "#d08a00", "#17a2b8"];
const NA = "—";
let selected = null;

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

// -- formatting ---------------------------------------------------------------------------

const missing = (v) => v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v));

function fmt(v, unit = "", digits = 1) {
  return missing(v) ? NA : `${Number(v).toFixed(digits)}${unit}`;
}

function fmtInt(v) {
  return missing(v) ? NA : String(Math.round(Number(v)));
}

function fmtPct(fraction) {
  return missing(fraction) ? NA : (100 * Number(fraction)).toFixed(1);
}

function ago(s) {
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// 250 -> "4m 10s", 3720 -> "1h 2m", 45 -> "45s".
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

// A unix time relative to now: "in 4m 10s" or "4m 10s ago".
function relative(ts) {
  const delta = ts - Date.now() / 1000;
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

// A unix time as local date and time, machine-readable in the datetime attribute.
function timeNode(ts) {
  if (missing(ts)) return document.createTextNode(NA);
  const date = new Date(ts * 1000);
  return el("time", { datetime: date.toISOString() }, date.toLocaleString());
}

// A countdown that the one-second ticker keeps current.
function countdown(ts) {
  return el("span", { class: "countdown", "data-until": ts }, relative(ts));
}

function tick() {
  for (const node of document.querySelectorAll("[data-until]")) node.textContent = relative(Number(node.dataset.until));
}

// -- charts -------------------------------------------------------------------------------

const tickText = (v) => String(Number(v.toPrecision(3)));

// A line chart with labelled axes. xs: the x value of each point (round numbers, unix seconds);
// series: [{name, values: [number|null]}] aligned with xs; a null breaks the line.
// everyX: a tick at each distinct x (rounds) while there are few; otherwise the first and last.
function lineChart(xs, series, { width = 320, height = 170, xLabel, yLabel, xTick = tickText, everyX = false }) {
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "plot" });
  const left = 48, right = 10, top = 8, bottom = 34;
  const plotW = width - left - right, plotH = height - top - bottom;
  svg.appendChild(el("svg:rect", { x: left, y: top, width: plotW, height: plotH, class: "frame" }));
  svg.appendChild(el("svg:text", { x: left + plotW / 2, y: height - 3, "text-anchor": "middle", class: "axis-label axis-x" }, xLabel));
  svg.appendChild(el("svg:text", {
    x: -(top + plotH / 2), y: 11, transform: "rotate(-90)", "text-anchor": "middle", class: "axis-label axis-y",
  }, yLabel));
  const all = series.flatMap((s) => s.values).filter((v) => !missing(v));
  const xsOk = xs.filter((v) => !missing(v));
  if (all.length === 0 || xsOk.length === 0) {
    svg.appendChild(el("svg:text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle", class: "tick" }, "no data"));
    return svg;
  }
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { const d = Math.abs(hi) * 0.1 || 1; hi += d; lo -= d; }
  const x0 = Math.min(...xsOk), x1 = Math.max(...xsOk);
  const x = (v) => left + (x1 === x0 ? plotW / 2 : ((v - x0) * plotW) / (x1 - x0));
  const y = (v) => top + plotH - ((v - lo) * plotH) / (hi - lo);
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.appendChild(el("svg:line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(el("svg:text", { x: left - 3, y: y(v) + 3, "text-anchor": "end", class: "tick" }, tickText(v)));
  }
  const distinct = [...new Set(xsOk)].sort((a, b) => a - b);
  const xTicks = everyX && distinct.length <= 12 ? distinct : x1 === x0 ? [x0] : [x0, x1];
  const anchor = (v) => (x1 === x0 ? "middle" : v === x0 ? "start" : v === x1 ? "end" : "middle");
  for (const v of xTicks) {
    svg.appendChild(el("svg:text", { x: x(v), y: top + plotH + 12, "text-anchor": anchor(v), class: "tick" }, xTick(v)));
  }
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.appendChild(el("svg:polyline", { points: run.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
      run = [];
    };
    s.values.forEach((v, i) => {
      if (missing(v) || missing(xs[i])) { flush(); return; }
      run.push(`${x(xs[i]).toFixed(1)},${y(v).toFixed(1)}`);
      if (xs.length <= 60) svg.appendChild(el("svg:circle", { cx: x(xs[i]), cy: y(v), r: 2.5, fill: color }));
    });
    flush();
  });
  return svg;
}

function chartBox(title, xs, series, axes) {
  const box = el("div", { class: "chart" });
  box.appendChild(el("h3", {}, title));
  box.appendChild(lineChart(xs, series, axes));
  const legend = el("div", { class: "legend" });
  series.forEach((s, k) => legend.appendChild(el("span", { style: `color:${COLORS[k % COLORS.length]}` }, s.name)));
  box.appendChild(legend);
  return box;
}

// A table-cell sparkline: its axes are the column header (recent reports, °C), repeated in its
// <title>; the range beside it gives the y scale.
function sparkline(values, title, unit, width = 100, height = 22) {
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img", "aria-label": title });
  svg.appendChild(el("svg:title", {}, title));
  const cell = el("span", { class: "sparkline" });
  cell.appendChild(svg);
  const vals = values.filter((v) => !missing(v));
  if (vals.length === 0) return cell;
  let lo = Math.min(...vals), hi = Math.max(...vals);
  cell.appendChild(el("span", { class: "spark-range" }, lo === hi ? fmt(lo, ` ${unit}`) : `${fmt(lo)}–${fmt(hi, ` ${unit}`)}`));
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (i) => 2 + (values.length <= 1 ? 0 : (i * (width - 4)) / (values.length - 1));
  const y = (v) => height - 2 - ((v - lo) * (height - 4)) / (hi - lo);
  const pts = values.map((v, i) => (missing(v) ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
  svg.appendChild(el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[0], "stroke-width": 1.5 }));
  return cell;
}

// -- fleet --------------------------------------------------------------------------------

function renderFleet(data, sparks) {
  const body = document.getElementById("devices");
  body.replaceChildren();
  if (data.devices.length === 0) {
    const row = el("tr");
    row.appendChild(el("td", { colspan: 11, class: "muted" }, "no devices yet"));
    body.appendChild(row);
  }
  for (const d of data.devices) {
    const row = el("tr", { "data-device": d.device_id });
    row.appendChild(el("td", {}, d.fleet ? `${d.fleet}/${d.device_id}` : d.device_id));
    const state = el("td");
    state.appendChild(el("span", { class: `state state-${d.state}`, title: d.reasons.join(", ") }, d.state));
    row.appendChild(state);
    row.appendChild(el("td", {}, fmt(d.cpu_temp_c, " °C")));
    const spark = el("td");
    spark.appendChild(sparkline(sparks[d.device_id] || [], `CPU temperature (°C), last ${(sparks[d.device_id] || []).length} reports`, "°C"));
    row.appendChild(spark);
    row.appendChild(el("td", {}, d.throttled.length ? d.throttled.join(", ") : NA));
    row.appendChild(el("td", {}, missing(d.memory_pct) ? NA : `${fmt(d.memory_pct, "%", 0)} (${fmt(d.memory_available_mb, " MB", 0)} free)`));
    row.appendChild(el("td", {}, d.agent_version || NA));
    row.appendChild(el("td", {}, d.model_version || NA));
    row.appendChild(el("td", {}, missing(d.last_round) ? NA : `${d.last_round}${d.last_outcome && d.last_outcome !== "ok" ? ` (${d.last_outcome})` : ""}`));
    row.appendChild(el("td", {}, fmt(d.inference_p95_ms, " ms")));
    row.appendChild(el("td", {}, ago(d.silent_s)));
    row.addEventListener("click", () => { selected = d.device_id; refreshDetail(); });
    body.appendChild(row);
  }
  const counts = Object.entries(data.counts).map(([s, n]) => `${n} ${s}`).join(", ");
  document.getElementById("counts").textContent = `${data.devices.length} device(s)${counts ? ": " + counts : ""}`;
  const models = Object.entries(data.models).map(([v, n]) => `${v} × ${n}`).join(", ");
  document.getElementById("models").textContent = models ? `model versions: ${models}` : "";
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// The device charts: x is the report's time (ts is the axis, never a charted value).
const DEVICE_CHARTS = [
  { title: "CPU temperature", yLabel: "°C", series: [["cpu temp", "cpu_temp_c"]] },
  { title: "CPU and memory use", yLabel: "% used", series: [["cpu", "cpu_pct"], ["memory", "memory_pct"]] },
  { title: "Agent memory (RSS)", yLabel: "MB", series: [["rss", "rss_mb"]] },
  { title: "Inference p95 latency", yLabel: "ms", series: [["p95", "inference_p95_ms"]] },
];

async function refreshDetail() {
  if (!selected) return;
  const [info, hist] = await Promise.all([
    getJSON(`/api/devices/${encodeURIComponent(selected)}`),
    getJSON(`/api/devices/${encodeURIComponent(selected)}/history?limit=360`),
  ]);
  const pts = hist.points;
  const xs = pts.map((p) => p.ts);
  const axes = { xLabel: "time (local)", xTick: (t) => new Date(t * 1000).toLocaleTimeString() };
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = `Device ${selected}`;
  document.getElementById("detail-charts").replaceChildren(...DEVICE_CHARTS.map((c) => chartBox(
    c.title, xs, c.series.map(([name, key]) => ({ name, values: pts.map((p) => p[key]) })), { ...axes, yLabel: c.yLabel })));
  document.getElementById("detail-facts").textContent = JSON.stringify(
    { birth: info.birth, events: info.events.slice(0, 10) }, null, 2);
}

// -- training -----------------------------------------------------------------------------

const GROUPS = ["train", "evaluate", "central"];

// run.charts (from the server) names the metrics worth a chart and their y-axis labels; counts
// and flags in the history are not among them.
function renderRun(run) {
  document.getElementById("run-id").textContent = run.run_id ? `run ${run.run_id}` : "";
  document.getElementById("run-error").textContent = run.error || "";
  const charts = document.getElementById("run-charts");
  if (!run.rounds.length) {
    charts.replaceChildren(el("p", { class: "muted" }, run.run_id ? "no rounds yet" : "no run yet"));
    return;
  }
  const xs = run.rounds.map((r) => r.round);
  const boxes = (run.charts || []).map((c) => chartBox(c.title, xs, GROUPS
    .filter((g) => run.rounds.some((r) => c.key in r[g]))
    .map((g) => ({ name: g, values: run.rounds.map((r) => (c.key in r[g] ? r[g][c.key] : null)) })),
  { xLabel: "round", yLabel: c.y_label, everyX: true }));
  const last = run.rounds[run.rounds.length - 1];
  const skipped = Object.values(last.skipped);
  const note = el("p", { class: "muted" },
    `round ${last.round}: ${last.selected.length} selected, ${skipped.length} skipped, ${last.failures} failure(s)` +
    (skipped.length ? ` — ${skipped.join("; ")}` : ""));
  charts.replaceChildren(...boxes, note);
}

// -- models -------------------------------------------------------------------------------

const STAGES = {
  canary: "canary", rolling_back: "rolling back", rolled_back: "rolled back", promoted: "promoted", aborted: "aborted",
};

// The live metrics of one version (or one rollout group): [label, key, format].
const VERSION_ROWS = [
  ["devices", "devices", fmtInt],
  ["predictions", "predictions", fmtInt],
  ["errors", "errors", fmtInt],
  ["latency p50 (ms)", "p50_ms", (v) => fmt(v, "", 1)],
  ["latency p99 (ms)", "p99_ms", (v) => fmt(v, "", 1)],
  ["mean confidence (0-1)", "mean_confidence", (v) => fmt(v, "", 3)],
  ["drift vs previous (PSI)", "drift_psi", (v) => fmt(v, "", 3)],
  ["labelled predictions", "labelled", fmtInt],
  ["accuracy (0-1)", "accuracy", (v) => fmt(v, "", 3)],
  ["MAE", "mae", (v) => fmt(v, "", 3)],
];
const GROUP_ROWS = [
  ["devices", "devices", fmtInt],
  ["reporting", "reporting", fmtInt],
  ["predictions", "predictions", fmtInt],
  ["errors", "errors", fmtInt],
  ["error rate (%)", "error_rate", fmtPct],
  ["latency p99 (ms)", "p99_ms", (v) => fmt(v, "", 1)],
  ["mean confidence (0-1)", "mean_confidence", (v) => fmt(v, "", 3)],
  ["labelled predictions", "labelled", fmtInt],
  ["accuracy (0-1)", "accuracy", (v) => fmt(v, "", 3)],
  ["MAE", "mae", (v) => fmt(v, "", 3)],
];

function cell(tag, content, attrs = {}) {
  const node = el(tag, attrs);
  node.append(...(Array.isArray(content) ? content : [content]));
  return node;
}

function row(cells, attrs = {}) {
  const tr = el("tr", attrs);
  tr.append(...cells.map((c) => (c instanceof Node && (c.tagName === "TD" || c.tagName === "TH") ? c : cell("td", c))));
  return tr;
}

// A metrics table: one row per metric, one column per object in `columns`.
function metricsTable(table, headers, columns, rows) {
  const head = el("thead");
  head.appendChild(row([cell("th", "metric"), ...headers.map((h) => cell("th", h))]));
  const body = el("tbody");
  for (const [label, key, format] of rows) {
    body.appendChild(row([cell("th", label), ...columns.map((c) => cell("td", format(c ? c[key] : null), { class: "num" }))], { "data-metric": key }));
  }
  table.replaceChildren(head, body);
}

function emptyBody(table, colspan, text) {
  table.tBodies[0].replaceChildren(row([el("td", { colspan, class: "muted" }, text)]));
}

function decisionText(decision) {
  if (missing(decision)) return NA;
  if (typeof decision !== "object") return String(decision);
  return decision.reason ? `${decision.outcome}: ${decision.reason}` : String(decision.outcome);
}

function renderRollout(r) {
  const box = el("div", { class: "rollout", "data-stage": r.stage });
  const title = el("p", { class: "rollout-title" });
  title.append(
    el("span", { class: `stage stage-${r.stage}`, id: "rollout-stage" }, STAGES[r.stage] || r.stage), " ",
    el("strong", { id: "rollout-version" }, r.version), ` replacing ${r.previous ?? NA}`,
    ` — rollout ${r.id}, run ${r.run_id} round ${r.round}`);
  box.appendChild(title);
  const facts = el("dl", { class: "facts" });
  const fact = (label, ...content) => { facts.append(el("dt", {}, label), cell("dd", content)); };
  fact("started", timeNode(r.started));
  fact("soak", `${duration(r.soak_s)}, ends `, timeNode(r.soak_ends), " (", countdown(r.soak_ends), ")");
  fact("min labels", fmtInt(r.min_labels));
  for (const group of ["canary", "control"]) {
    const ids = r[group] || [];
    fact(group, `${ids.length} device(s): ${ids.join(", ") || NA}`);
  }
  box.appendChild(facts);
  const d = r.decision;
  const decision = el("div", { id: "rollout-decision", class: d ? `decision decision-${d.outcome}` : "decision" });
  if (d) {
    decision.append(el("strong", {}, `Decision: ${d.outcome}`), ` (${d.by === "operator" ? "by an operator" : "automatic"}, `, timeNode(d.at), ")");
    decision.appendChild(el("p", { class: "reason", id: "rollout-reason" }, d.reason || NA));
  } else {
    decision.append(el("strong", {}, "No decision yet"), " — soak end: ", countdown(r.soak_ends));
  }
  box.appendChild(decision);
  box.appendChild(el("h3", {}, "Canary vs control"));
  const table = el("table", { id: "rollout-comparison", class: "plain metrics" });
  const cmp = r.comparison || {};
  metricsTable(table, [`canary (${r.version})`, `control (${r.previous ?? NA})`], [cmp.canary, cmp.control], GROUP_ROWS);
  box.appendChild(table);
  return box;
}

// doc: the /api/models document, or null when the coordinator has no such endpoint (404).
function renderModels(doc) {
  document.getElementById("models-error").textContent = "";
  const rollout = document.getElementById("rollout");
  const devices = document.getElementById("model-devices");
  const versions = document.getElementById("model-versions");
  const history = document.getElementById("rollout-history");
  const r = doc && doc.rollout;
  const past = (doc && doc.history) || [];
  if (r) rollout.replaceChildren(renderRollout(r));
  else rollout.replaceChildren(el("p", { class: "muted" }, past.length ? "no rollout in progress" : "no rollouts yet"));

  const devs = (doc && doc.devices) || [];
  if (!devs.length) emptyBody(devices, 6, "no devices yet");
  else devices.tBodies[0].replaceChildren(...devs.map((d) => {
    const delivery = cell("td", d.delivery ?? NA);
    if (d.delivery_error) delivery.appendChild(el("span", { class: "error" }, ` (${d.delivery_error})`));
    const pending = d.desired && d.serving !== d.desired;
    return row([
      d.device_id, d.group ?? NA, d.serving ?? NA, d.desired ?? NA, delivery, d.online ? "yes" : "no",
    ], { "data-device": d.device_id, class: pending ? "pending" : "" });
  }));

  const vs = (doc && doc.versions) || [];
  if (!vs.length) versions.replaceChildren(cell("tbody", row([el("td", { class: "muted" }, "no metrics yet")])));
  else metricsTable(versions, vs.map((v) => {
    const fresh = r && r.stage === "canary" ? " (canary)" : " (new)";
    const tag = r && v.version === r.version ? fresh : r && v.version === r.previous ? " (previous)" : "";
    return `${v.version}${tag}`;
  }), vs, VERSION_ROWS);

  if (!past.length) emptyBody(history, 7, "no rollouts yet");
  else history.tBodies[0].replaceChildren(...past.map((h) => row([
    h.id, h.version, h.previous ?? NA, STAGES[h.stage] || h.stage, decisionText(h.decision), timeNode(h.started), timeNode(h.finished),
  ])));
}

async function getModels() {
  const res = await fetch("/api/models", { cache: "no-store" });
  if (res.status === 404) return null;  // an older coordinator: no rollouts to show
  if (!res.ok) throw new Error(`/api/models: HTTP ${res.status}`);
  return res.json();
}

// -- polling ------------------------------------------------------------------------------

async function poll() {
  try {
    const [fleet, sparks] = await Promise.all([getJSON("/api/fleet"), getJSON("/api/sparklines?metric=cpu_temp_c&points=30")]);
    renderFleet(fleet, sparks.series);
    if (selected) await refreshDetail();
  } catch (err) {
    document.getElementById("updated").textContent = `update failed: ${err.message}`;
  }
  try {
    renderModels(await getModels());
  } catch (err) {
    document.getElementById("models-error").textContent = `model view unavailable: ${err.message}`;
  }
  try {
    renderRun(await getJSON("/api/runs/latest"));
  } catch (err) {
    document.getElementById("run-error").textContent = `training history unavailable: ${err.message}`;
  }
}

poll();
setInterval(poll, POLL_MS);
setInterval(tick, 1000);
