// Orchard dashboard: polls the coordinator's JSON API and draws inline SVG. No dependencies.
"use strict";

const POLL_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2d7dd2", "#e4572e", "#3a8a2e", "#a259c4", "#d08a00", "#17a2b8"];
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

function fmt(v, unit = "", digits = 1) {
  return v === null || v === undefined ? "-" : `${Number(v).toFixed(digits)}${unit}`;
}

function ago(s) {
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// A polyline per series scaled into width x height; series: [{name, values: [number|null]}].
function lineChart(series, width, height, { axes = false } = {}) {
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark" });
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  if (all.length === 0) return svg;
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = axes ? 28 : 2;
  const n = Math.max(...series.map((s) => s.values.length));
  const x = (i) => pad + (n <= 1 ? 0 : (i * (width - pad - 4)) / (n - 1));
  const y = (v) => height - 4 - ((v - lo) * (height - 8)) / (hi - lo);
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    svg.appendChild(el("svg:polyline", {
      points: pts.join(" "), fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": axes ? 2 : 1.5,
    }));
    if (axes && n <= 60) {  // dots, so a single round still shows
      s.values.forEach((v, i) => {
        if (v !== null) svg.appendChild(el("svg:circle", { cx: x(i), cy: y(v), r: 2.5, fill: COLORS[k % COLORS.length] }));
      });
    }
  });
  if (axes) {
    svg.appendChild(el("svg:text", { x: 0, y: 10, "font-size": 9 }, hi.toPrecision(3)));
    svg.appendChild(el("svg:text", { x: 0, y: height - 2, "font-size": 9 }, lo.toPrecision(3)));
  }
  return svg;
}

function chartBox(title, series, width = 320, height = 140) {
  const box = el("div", { class: "chart" });
  box.appendChild(el("h3", {}, title));
  box.appendChild(lineChart(series, width, height, { axes: true }));
  const legend = el("div", { class: "legend" });
  series.forEach((s, k) => legend.appendChild(el("span", { style: `color:${COLORS[k % COLORS.length]}` }, s.name)));
  box.appendChild(legend);
  return box;
}

function renderFleet(data, sparks) {
  const body = document.getElementById("devices");
  body.replaceChildren();
  if (data.devices.length === 0) {
    const row = el("tr");
    row.appendChild(el("td", { colspan: 10, class: "muted" }, "no devices yet"));
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
    spark.appendChild(lineChart([{ name: "temp", values: sparks[d.device_id] || [] }], 100, 22));
    row.appendChild(spark);
    row.appendChild(el("td", {}, d.throttled.length ? d.throttled.join(", ") : "-"));
    row.appendChild(el("td", {}, d.memory_pct === null ? "-" : `${fmt(d.memory_pct, "%", 0)} (${fmt(d.memory_available_mb, " MB", 0)} free)`));
    row.appendChild(el("td", {}, d.model_version || "-"));
    row.appendChild(el("td", {}, d.last_round === null ? "-" : `${d.last_round}${d.last_outcome && d.last_outcome !== "ok" ? ` (${d.last_outcome})` : ""}`));
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

async function refreshDetail() {
  if (!selected) return;
  const [info, hist] = await Promise.all([
    getJSON(`/api/devices/${encodeURIComponent(selected)}`),
    getJSON(`/api/devices/${encodeURIComponent(selected)}/history?limit=360`),
  ]);
  const pts = hist.points;
  const col = (k) => pts.map((p) => p[k]);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = `Device ${selected}`;
  const charts = document.getElementById("detail-charts");
  charts.replaceChildren(
    chartBox("CPU temperature (°C)", [{ name: "cpu_temp_c", values: col("cpu_temp_c") }]),
    chartBox("CPU and memory (%)", [{ name: "cpu %", values: col("cpu_pct") }, { name: "memory %", values: col("memory_pct") }]),
    chartBox("Inference p95 (ms)", [{ name: "p95", values: col("inference_p95_ms") }]),
  );
  document.getElementById("detail-facts").textContent = JSON.stringify(
    { birth: info.birth, events: info.events.slice(0, 10) }, null, 2);
}

function renderRun(run) {
  document.getElementById("run-id").textContent = run.run_id ? `run ${run.run_id}` : "";
  document.getElementById("run-error").textContent = run.error || "";
  const charts = document.getElementById("run-charts");
  if (!run.rounds.length) {
    charts.replaceChildren(el("p", { class: "muted" }, run.run_id ? "no rounds yet" : "no run yet"));
    return;
  }
  const names = new Set();
  for (const r of run.rounds) for (const g of ["train", "evaluate", "central"]) for (const m of Object.keys(r[g])) names.add(m);
  const boxes = [...names].sort().map((m) => chartBox(m, ["train", "evaluate", "central"]
    .filter((g) => run.rounds.some((r) => m in r[g]))
    .map((g) => ({ name: g, values: run.rounds.map((r) => (m in r[g] ? r[g][m] : null)) }))));
  const last = run.rounds[run.rounds.length - 1];
  const skipped = Object.values(last.skipped);
  const note = el("p", { class: "muted" },
    `round ${last.round}: ${last.selected.length} selected, ${skipped.length} skipped, ${last.failures} failure(s)` +
    (skipped.length ? ` — ${skipped.join("; ")}` : ""));
  charts.replaceChildren(...boxes, note);
}

async function poll() {
  try {
    const [fleet, sparks] = await Promise.all([getJSON("/api/fleet"), getJSON("/api/sparklines?metric=cpu_temp_c&points=30")]);
    renderFleet(fleet, sparks.series);
    if (selected) await refreshDetail();
  } catch (err) {
    document.getElementById("updated").textContent = `update failed: ${err.message}`;
  }
  try {
    renderRun(await getJSON("/api/runs/latest"));
  } catch (err) {
    document.getElementById("run-error").textContent = `training history unavailable: ${err.message}`;
  }
}

poll();
setInterval(poll, POLL_MS);
