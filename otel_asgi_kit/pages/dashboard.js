// The kit's dashboard: a small canvas chart (lines or bars over time) and the page that polls
// /kit/dashboard.json and draws it. Written for this package: no dependency, no network but the admin port.
"use strict";

const COLORS = ["#4a7bd0", "#e08a1e", "#b00020", "#2e9d5b", "#8a55c8", "#666666"];

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function formatValue(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function clock(seconds) {
  return new Date(seconds * 1000).toTimeString().slice(0, 8);
}

// One chart on one canvas. series: [{name, values, color}], all aligned on times.
class KitChart {
  constructor(canvas, options) {
    this.canvas = canvas;
    this.kind = options.kind || "line";
    this.unit = options.unit || "";
    this.onPick = options.onPick || null;
    this.times = [];
    this.series = [];
    this.hover = -1;
    canvas.addEventListener("mousemove", (e) => this.move(e));
    canvas.addEventListener("mouseleave", () => { this.hover = -1; this.draw(); });
    canvas.addEventListener("click", (e) => this.click(e));
    if (this.onPick) canvas.style.cursor = "pointer";
  }

  update(times, series) {
    this.times = times;
    this.series = series;
    let points = 0;
    for (const s of series) for (const v of s.values) if (v !== null) points += 1;
    this.canvas.dataset.points = String(points);
    this.draw();
  }

  layout() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 300;
    const height = this.canvas.clientHeight || 120;
    if (this.canvas.width !== Math.round(width * ratio)) this.canvas.width = Math.round(width * ratio);
    if (this.canvas.height !== Math.round(height * ratio)) this.canvas.height = Math.round(height * ratio);
    return { ratio, width, height, left: 44, right: 8, top: 8, bottom: 18 };
  }

  scale(box) {
    let top = 0;
    for (const s of this.series) for (const v of s.values) if (v !== null && v > top) top = v;
    const max = niceMax(top);
    const plotW = box.width - box.left - box.right;
    const plotH = box.height - box.top - box.bottom;
    const n = Math.max(this.times.length, 1);
    return {
      max,
      x: (i) => box.left + (plotW * (i + 0.5)) / n,
      y: (v) => box.top + plotH - (plotH * v) / max,
      barW: Math.max(1, (plotW / n) * 0.7),
      index: (px) => Math.min(n - 1, Math.max(0, Math.floor(((px - box.left) / plotW) * n))),
    };
  }

  draw() {
    const box = this.layout();
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(box.ratio, 0, 0, box.ratio, 0, 0);
    ctx.clearRect(0, 0, box.width, box.height);
    const sc = this.scale(box);
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = "#777";
    ctx.strokeStyle = "#e6e6ea";
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(sc.y(sc.max * f)) + 0.5;
      ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.width - box.right, y); ctx.stroke();
      ctx.textAlign = "right";
      ctx.fillText(formatValue(sc.max * f), box.left - 4, y + 3);
    }
    if (this.times.length) {
      ctx.textAlign = "left";
      ctx.fillText(clock(this.times[0]), box.left, box.height - 4);
      ctx.textAlign = "right";
      ctx.fillText(clock(this.times[this.times.length - 1]), box.width - box.right, box.height - 4);
    }
    this.series.forEach((s, k) => this.drawSeries(ctx, sc, s, k));
    if (this.hover >= 0 && this.hover < this.times.length) this.drawHover(ctx, box, sc);
  }

  drawSeries(ctx, sc, s, k) {
    const color = s.color || COLORS[k % COLORS.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    if (this.kind === "bar") {
      const shift = (sc.barW / this.series.length) * k;
      s.values.forEach((v, i) => {
        if (v === null || v <= 0) return;
        const y = sc.y(v);
        ctx.fillRect(sc.x(i) - sc.barW / 2 + shift, y, sc.barW / this.series.length, sc.y(0) - y);
      });
      return;
    }
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      if (drawing) ctx.lineTo(sc.x(i), sc.y(v)); else ctx.moveTo(sc.x(i), sc.y(v));
      drawing = true;
    });
    ctx.stroke();
    s.values.forEach((v, i) => {  // a lone point between gaps would not show as a line
      const alone = v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null;
      if (alone) ctx.fillRect(sc.x(i) - 1.5, sc.y(v) - 1.5, 3, 3);
    });
  }

  drawHover(ctx, box, sc) {
    const i = this.hover;
    const x = Math.round(sc.x(i)) + 0.5;
    ctx.strokeStyle = "#999";
    ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.height - box.bottom); ctx.stroke();
    const lines = [clock(this.times[i])].concat(
      this.series.map((s) => `${s.name}: ${formatValue(s.values[i])} ${this.unit}`));
    const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 10;
    const left = x + w + 8 > box.width ? x - w - 6 : x + 6;
    ctx.fillStyle = "rgba(255,255,255,0.92)";
    ctx.fillRect(left, box.top, w, lines.length * 12 + 6);
    ctx.fillStyle = "#222";
    ctx.textAlign = "left";
    lines.forEach((l, k) => ctx.fillText(l, left + 5, box.top + 13 + k * 12));
  }

  eventIndex(e) {
    const rect = this.canvas.getBoundingClientRect();
    const box = this.layout();
    const sc = this.scale(box);
    return { i: sc.index(e.clientX - rect.left), y: e.clientY - rect.top, sc };
  }

  move(e) {
    if (!this.times.length) return;
    this.hover = this.eventIndex(e).i;
    this.draw();
  }

  // The series nearest to the click at the clicked step, if it has a value there.
  click(e) {
    if (!this.onPick || !this.times.length) return;
    const { i, y, sc } = this.eventIndex(e);
    let best = null;
    this.series.forEach((s) => {
      const v = s.values[i];
      if (v === null || v === undefined) return;
      const d = Math.abs(sc.y(v) - y);
      if (best === null || d < best.d) best = { d, s, v };
    });
    if (best !== null) this.onPick(i, best.s, best.v);
  }
}

// ---- the page ----------------------------------------------------------------------------

const state = { window: "5m", charts: {}, timer: null };

function tracesLink(route, extra) {
  const q = new URLSearchParams();
  if (route) q.set("route", route);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return "traces?" + q.toString();
}

// The lower edge of the duration bucket holding `ms`: every request in that bucket is at least this slow.
function bucketFloor(bounds, ms) {
  let floor = 0;
  for (const b of bounds) if (b * 1000 < ms) floor = b * 1000;
  return floor;
}

function chart(id, options) {
  if (!state.charts[id]) state.charts[id] = new KitChart(document.getElementById(id), options);
  return state.charts[id];
}

function httpCharts(prefix, route, data, doc) {
  chart(prefix + "-rate", { unit: "req/s" }).update(doc.t, [{ name: "requests/s", values: data.rate }]);
  chart(prefix + "-errors", {
    kind: "bar", unit: "req/s",
    onPick: () => { location.href = tracesLink(route, { failed: "1" }); },
  }).update(doc.t, [{ name: "failed/s", values: data.errors, color: "#b00020" }]);
  chart(prefix + "-latency", {
    unit: "ms",
    onPick: (i, s, v) => { location.href = tracesLink(route, { min_ms: String(bucketFloor(doc.bounds, v)) }); },
  }).update(doc.t, [
    { name: "p50", values: data.p50, color: COLORS[0] },
    { name: "p95", values: data.p95, color: COLORS[1] },
    { name: "p99", values: data.p99, color: COLORS[2] },
  ]);
}

function summary(w) {
  const pct = w.error_ratio === null ? "–" : (w.error_ratio * 100).toFixed(2) + " %";
  return `${w.requests} requests · ${w.failed} failed (${pct}) · p50 ${formatValue(w.p50)} · ` +
    `p95 ${formatValue(w.p95)} · p99 ${formatValue(w.p99)} ms`;
}

function routeRow(route, index) {
  const row = document.createElement("section");
  row.className = "route";
  row.dataset.route = route;
  const p = "route" + index;
  row.innerHTML = `<h3></h3><p class="meta summary"></p><div class="charts">` +
    `<figure><figcaption>Requests/s</figcaption><canvas id="${p}-rate"></canvas></figure>` +
    `<figure><figcaption>Failed/s (click: failed requests)</figcaption><canvas id="${p}-errors"></canvas></figure>` +
    `<figure><figcaption>Latency ms p50/p95/p99 (click: requests this slow)</figcaption>` +
    `<canvas id="${p}-latency"></canvas></figure></div>`;
  row.querySelector("h3").textContent = route;
  return row;
}

function render(doc) {
  httpCharts("overall", null, doc.overall, doc);
  document.getElementById("overall-summary").textContent = summary(doc.overall.window);
  const list = document.getElementById("routes");
  doc.routes.forEach((route, index) => {
    let row = list.querySelector(`section[data-index="${index}"]`);
    if (!row) { row = routeRow(route, index); row.dataset.index = String(index); list.appendChild(row); }
    const data = doc.by_route[route];
    row.querySelector(".summary").textContent = summary(data.window);
    httpCharts("route" + index, route, data, doc);
  });
  document.getElementById("no-routes").hidden = doc.routes.length > 0;
  chart("ws-active", { unit: "" }).update(doc.t, [{ name: "open", values: doc.websocket.active }]);
  chart("ws-messages", { unit: "msg/s" }).update(doc.t, [{ name: "messages/s", values: doc.websocket.messages }]);
  chart("loop-lag", { unit: "ms" }).update(doc.t, [{ name: "lag p99", values: doc.loop.lag_p99_ms }]);
  chart("loop-blocked", { kind: "bar" }).update(doc.t, [{ name: "blocked", values: doc.loop.blocked, color: "#b00020" }]);
  const workers = Object.entries(doc.process.workers);
  const perWorker = (key) => workers.length > 1
    ? workers.map(([pid, w]) => ({ name: "pid " + pid, values: w[key] })) : [];
  chart("cpu", { unit: "%" }).update(doc.t, [{ name: "all", values: doc.process.cpu_percent }].concat(perWorker("cpu_percent")));
  chart("memory", { unit: "MB" }).update(doc.t, [{ name: "all", values: doc.process.memory_mb }].concat(perWorker("memory_mb")));
  document.getElementById("updated").textContent =
    `updated ${clock(doc.now)} · step ${doc.step_s} s · sampled every ${doc.interval_s} s`;
}

async function refresh() {
  try {
    const response = await fetch(`dashboard.json?window=${state.window}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    render(await response.json());
    document.getElementById("error").hidden = true;
  } catch (err) {
    const box = document.getElementById("error");
    box.textContent = "could not load dashboard.json: " + err.message;
    box.hidden = false;
  }
}

function start() {
  document.querySelectorAll("button[data-window]").forEach((button) => {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      document.querySelectorAll("button[data-window]").forEach((b) => b.classList.toggle("on", b === button));
      refresh();
    });
  });
  const every = Math.max(1000, Number(document.body.dataset.interval) * 1000);
  refresh();
  state.timer = setInterval(refresh, every);
  window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.draw()));
}

document.addEventListener("DOMContentLoaded", start);
