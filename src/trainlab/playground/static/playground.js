/* trainlab playground: the page. The server trains (trainlab's own engine) and pushes every
   number over one websocket; this file draws them. The whole state lives in the URL query. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

const SIDE_COLORS = { A: "#2f5fd0", B: "#d2691e" };
const CLASS_COLORS = [[47, 95, 208], [214, 96, 43], [46, 150, 90], [150, 70, 190], [200, 160, 30],
                      [30, 160, 170], [190, 60, 110], [110, 110, 110], [120, 150, 40], [90, 60, 30]];
const RULE_COLORS = { sgd: "#222222", momentum: "#1f77b4", nesterov: "#17becf", adagrad: "#2ca02c",
                      rmsprop: "#ff7f0e", adam: "#d62728", adam_seed: "#9467bd", adamw: "#8c564b" };
const EMA = 0.95;

const app = {
  ws: null, schema: null, presets: [], flat: {}, ready: null, playing: false, tab: "train",
  sides: [], every: 5, step: 0, epoch: 0, charts: {}, pendingStart: null, presetId: null,
  traj: null, reconnectDelay: 500, updates: 0, lastRender: 0, renderQueued: false,
};
window.playground = app;   // for tests and the curious: the page's state

/* ------------------------------------------------------------------ URL state */
function parseQuery(search) {
  const flat = {};
  for (const [k, v] of new URLSearchParams(search)) flat[k] = v;
  return flat;
}
function writeUrl(query) {
  const url = `${location.pathname}?${query}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

/* ------------------------------------------------------------------ websocket */
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  app.ws = ws;
  ws.onopen = () => { app.reconnectDelay = 500; setConn(true); };
  ws.onclose = () => {
    setConn(false);
    app.playing = false; syncPlay();
    setTimeout(connect, app.reconnectDelay);
    app.reconnectDelay = Math.min(app.reconnectDelay * 2, 8000);
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    const handler = HANDLERS[msg.type];
    if (handler) handler(msg);
  };
}
function send(msg) {
  if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(msg));
}
function setConn(on) {
  const c = $("#conn");
  c.textContent = on ? "live" : "disconnected";
  c.className = "conn " + (on ? "on" : "off");
}

const HANDLERS = {
  hello(msg) {
    app.schema = msg.schema;
    app.presets = msg.presets;
    buildPresets();
    if (!app.flat.tab) app.flat.tab = "train";
    buildControls();
    selectTab(app.flat.tab === "opt" ? "opt" : "train", false);
    start(false);
    if (app.tab === "opt") requestTrajectories();
  },
  ready(msg) {
    clearError();
    app.ready = msg;
    app.every = msg.every;
    app.flat = parseQuery(msg.state.query);
    writeUrl(msg.state.query);
    buildControls();
    buildSides(msg);
    app.step = 0; app.epoch = 0;
    renderStatus();
  },
  update(msg) { onUpdate(msg); },
  paused(msg) {
    app.playing = false; syncPlay();
    if (msg.reason) showNotice(msg.reason);
  },
  error(msg) { showError(msg.message, msg.key); },
  trajectories(msg) { onTrajectories(msg); },
};

/* ------------------------------------------------------------------ errors and notices */
function showError(message, key) {
  const box = $("#error");
  box.textContent = message;
  box.classList.remove("hidden");
  document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  if (key) {
    const input = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (input) input.closest(".field").classList.add("invalid");
  }
}
function clearError() {
  $("#error").classList.add("hidden");
  document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
}
function showNotice(text) {
  const box = $("#notice");
  box.textContent = text;
  box.classList.remove("hidden");
}

/* ------------------------------------------------------------------ presets */
function buildPresets() {
  const root = $("#presets");
  root.replaceChildren();
  let group = null;
  for (const p of app.presets) {
    const g = p.tab === "opt" ? "optimizer tab" : "network";
    if (g !== group) { root.append(el("div", { class: "group", text: g })); group = g; }
    root.append(el("button", { "data-preset": p.id, title: p.claim, text: p.title, onclick: () => applyPreset(p) }));
  }
}
function applyPreset(p) {
  app.presetId = p.id;
  document.querySelectorAll("#presets button").forEach((b) => b.classList.toggle("active", b.dataset.preset === p.id));
  const keepOpt = p.tab === "opt" ? {} : pick(app.flat, (k) => k === "surf" || k === "osteps" || k === "orules" || k.startsWith("o."));
  const keepNet = p.tab === "opt" ? pick(app.flat, (k) => !(k === "surf" || k === "osteps" || k === "orules" || k.startsWith("o.") || k === "tab")) : {};
  app.flat = { ...keepOpt, ...keepNet };
  for (const [k, v] of Object.entries(p.query)) app.flat[k] = String(v);
  app.flat.tab = p.tab === "opt" ? "opt" : "train";
  showClaim(p);
  selectTab(app.flat.tab, false);
  if (p.tab === "opt") { buildControls(); requestTrajectories(); } else start(false);
}
function pick(obj, test) {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => test(k)));
}
function showClaim(p) {
  const box = $("#claim");
  box.replaceChildren(el("b", { text: p.title }), el("div", { class: "quote", text: `“${p.claim}”` }),
    el("div", { text: p.shows }),
    el("div", { class: "meta", text: `seed: ${p.section} · measured with a numeric verdict by: trainlab experiment ${p.study}` }));
  box.classList.remove("hidden");
}

/* ------------------------------------------------------------------ controls */
function fieldValue(key, field, inherit) {
  if (key in app.flat) return app.flat[key];
  if (inherit !== undefined) return inherit;
  if (field.by) {
    const byValue = app.flat[field.by] ?? (app.schema.data.find((f) => f.key === field.by) || {}).default;
    if (byValue in field.defaults) return field.defaults[byValue];
  }
  return field.default;
}
function asBool(v) { return v === true || v === "1" || v === "true" || v === 1; }

function makeInput(field, key, value, onchange) {
  let input;
  if (field.kind === "choice") {
    input = el("select");
    field.choices.forEach((c, i) => input.append(el("option", { value: c, text: field.names[i] || c })));
    input.value = String(value);
  } else if (field.kind === "bool") {
    input = el("input", { type: "checkbox" });
    input.checked = asBool(value);
  } else {
    input = el("input", { type: "number", step: "any" });
    if (field.lo !== null) input.min = field.lo;
    if (field.hi !== null) input.max = field.hi;
    if (field.kind === "int") input.step = "1";
    input.value = String(value);
  }
  input.dataset.key = key;
  input.title = field.help || `${field.label}: ${rangeText(field)}`;
  input.addEventListener("change", () => onchange(field.kind === "bool" ? (input.checked ? "1" : "0") : input.value));
  const wrap = el("label", { class: "field" + (field.kind === "bool" ? " bool" : "") });
  if (field.kind === "bool") wrap.append(input, el("span", { text: field.label }));
  else wrap.append(el("span", { text: field.label }), input);
  return wrap;
}
function rangeText(f) {
  if (f.kind === "choice") return f.choices.join(", ");
  if (f.kind === "bool") return "on or off";
  return `${f.lo_open ? "(" : "["}${f.lo}, ${f.hi}${f.hi_open ? ")" : "]"}`;
}
function applies(field, opt) { return !field.only.length || field.only.includes(opt); }

function buildControls() {
  if (!app.schema) return;
  const data = $("#data-fields");
  data.replaceChildren();
  for (const f of app.schema.data) {
    if ((f.key === "n" || f.key === "noise") && fieldValue("ds", app.schema.data[0]) === "digits") continue;
    data.append(makeInput(f, f.key, fieldValue(f.key, f), (v) => {
      app.flat[f.key] = v;
      if (f.key === "ds") { delete app.flat.noise; delete app.flat.n; buildControls(); }
      changed();
    }));
  }
  const compare = asBool(app.flat.cmp);
  $("#compare").checked = compare;
  const runs = $("#run-fields");
  runs.replaceChildren();
  const sideA = {};
  for (const f of app.schema.run) sideA[f.key] = fieldValue(f.key, f);
  runs.append(runBox("A", "", sideA));
  if (compare) {
    const sideB = {};
    for (const f of app.schema.run) sideB[f.key] = fieldValue("b." + f.key, f, sideA[f.key]);
    runs.append(runBox("B", "b.", sideB));
  }
  const surf = $("#surface-fields");
  surf.replaceChildren();
  for (const f of app.schema.surface) {
    surf.append(makeInput(f, f.key, fieldValue(f.key, f), (v) => { app.flat[f.key] = v; trajChanged(); }));
  }
  buildRuleControls();
}
function runBox(label, prefix, values) {
  const box = el("div", { class: `run-box ${label}` });
  const title = app.flat.cmp && asBool(app.flat.cmp) ? `network ${label}` : "network";
  box.append(el("h2", { text: title }));
  const grid = el("div", { class: "fields" });
  for (const f of app.schema.run) {
    if (!applies(f, values.opt)) continue;
    grid.append(makeInput(f, prefix + f.key, values[f.key], (v) => {
      app.flat[prefix + f.key] = v;
      if (f.key === "opt") buildControls();
      changed();
    }));
  }
  box.append(grid);
  return box;
}
function buildRuleControls() {
  const root = $("#rule-fields");
  root.replaceChildren();
  const shown = (app.flat.orules ?? app.schema.rules.filter((r) => r !== "adamw").join(",")).split(",");
  for (const rule of app.schema.rules) {
    const on = shown.includes(rule);
    const check = el("input", { type: "checkbox" });
    check.checked = on;
    check.dataset.rule = rule;
    check.addEventListener("change", () => {
      const now = app.schema.rules.filter((r) => (r === rule ? check.checked : shown.includes(r)));
      app.flat.orules = now.join(",");
      buildRuleControls();
      trajChanged();
    });
    const name = app.schema.run.find((f) => f.key === "opt").names[app.schema.rules.indexOf(rule)];
    const box = el("div", { class: "rule-box" },
      el("label", {}, check, el("span", { class: "sw", style: `background:${RULE_COLORS[rule]}` }), el("span", { text: name })));
    if (on) {
      const grid = el("div", { class: "fields" });
      for (const f of app.schema.rule) {
        if (f.key !== "lr" && !applies(f, rule)) continue;
        const key = `o.${rule}.${f.key}`;
        const value = key in app.flat ? app.flat[key] : (f.key === "lr" ? f.defaults[rule] : f.default);
        grid.append(makeInput(f, key, value, (v) => { app.flat[key] = v; trajChanged(); }));
      }
      box.append(grid);
    }
    root.append(box);
  }
}

let changeTimer = null;
function changed() {
  clearTimeout(changeTimer);
  changeTimer = setTimeout(() => start(app.playing), 250);
}
let trajTimer = null;
function trajChanged() {
  clearTimeout(trajTimer);
  trajTimer = setTimeout(requestTrajectories, 250);
}
function start(play) {
  app.playing = false; syncPlay();
  $("#notice").classList.add("hidden");
  send({ type: "start", state: app.flat, play: !!play });
  if (play) { app.playing = true; syncPlay(); }
}

/* ------------------------------------------------------------------ tabs and buttons */
function selectTab(tab, push = true) {
  app.tab = tab;
  app.flat.tab = tab;
  document.querySelectorAll("#tabs .tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tabpane").forEach((p) => p.classList.toggle("hidden", p.dataset.tab !== tab));
  if (tab === "opt" && app.playing) { send({ type: "pause" }); app.playing = false; syncPlay(); }
  if (push) {
    if (tab === "opt" && !app.traj) requestTrajectories();
    if (app.ready) {
      const q = new URLSearchParams(app.ready.state.query);
      if (tab === "opt") q.set("tab", "opt"); else q.delete("tab");
      writeUrl(q.toString().replace(/%2C/g, ","));
    }
  }
}
function syncPlay() {
  $("#play").textContent = app.playing ? "❚❚ pause" : "▶ play";
}
function wireButtons() {
  document.querySelectorAll("#tabs .tab").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("#play").addEventListener("click", () => {
    app.playing = !app.playing;
    send({ type: app.playing ? "play" : "pause" });
    syncPlay();
  });
  $("#step-batch").addEventListener("click", () => send({ type: "step", unit: "batch" }));
  $("#step-epoch").addEventListener("click", () => send({ type: "step", unit: "epoch" }));
  $("#reset").addEventListener("click", () => { app.playing = false; syncPlay(); send({ type: "reset" }); });
  $("#compare").addEventListener("change", (ev) => {
    if (ev.target.checked) app.flat.cmp = "1";
    else { delete app.flat.cmp; for (const k of Object.keys(app.flat)) if (k.startsWith("b.")) delete app.flat[k]; }
    buildControls();
    changed();
  });
  $("#copylink").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(location.href); $("#copylink").textContent = "copied"; }
    catch (e) { window.prompt("copy this link", location.href); }
    setTimeout(() => { $("#copylink").textContent = "copy link"; }, 1500);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.code === "Space" && !["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(document.activeElement.tagName)
        && app.tab === "train") {
      ev.preventDefault();
      $("#play").click();
    }
  });
  $("#opt-play").addEventListener("click", () => toggleTrajPlay());
  $("#opt-restart").addEventListener("click", () => { if (app.traj) { app.traj.frame = 0; app.traj.playing = true; syncTrajPlay(); animate(); } });
}

/* ------------------------------------------------------------------ the network tab: sides */
function describeRun(cfg) {
  const opt = app.schema.run.find((f) => f.key === "opt");
  const init = app.schema.run.find((f) => f.key === "init");
  const act = app.schema.run.find((f) => f.key === "act");
  const name = (field, v) => field.names[field.choices.indexOf(v)] || v;
  const scale = cfg.scale !== 1 ? ` ×${cfg.scale}` : "";
  return `${cfg.depth} × ${cfg.width} ${name(act, cfg.act)}, ${name(init, cfg.init)}${scale}` +
         `${cfg.bn ? ", BatchNorm" : ""}, ${name(opt, cfg.opt)} lr ${cfg.lr}`;
}
function buildSides(msg) {
  const root = $("#sides");
  root.replaceChildren();
  root.classList.toggle("two", msg.runs.length === 2);
  app.sides = msg.runs.map((r) => {
    const node = $("#side-template").content.firstElementChild.cloneNode(true);
    node.classList.add(r.label);
    $(".side-title", node).textContent = msg.runs.length === 2 ? `${r.label}: ${describeRun(r.config)}` : describeRun(r.config);
    $(".side-title", node).style.color = SIDE_COLORS[r.label];
    root.append(node);
    const side = {
      label: r.label, node, run: r, layers: r.act_layers, linear: r.linear_layers,
      hist: [], ratioX: [], ratioY: r.linear_layers.map(() => []), findings: [], log: [], diverged: null,
      train: [], trainAcc: [], val: [], valAcc: [], ema: 0, emaAcc: 0, emaN: 0, boundary: null,
    };
    $(".per-layer", node).addEventListener("change", () => drawHistograms(side));
    if (!msg.data.two_d) {     // no 2-D boundary to draw: the diagnosis takes the row
      $(".boundary", node).remove();
      $(".side-row", node).before(el("div", { class: "note", text: `${msg.data.dataset}: ${msg.data.inputs} inputs, ` +
        `${msg.data.classes} classes (the decision boundary is drawn for the 2-D sets)` }));
    }
    side.ratioChart = makeRatioChart($(".ratio-chart", node), side);
    renderFindings(side);
    return side;
  });
  app.xs = [];
  buildMainCharts(msg.runs.map((r) => r.label));
}

function chartWidth(node, fallback) {
  return Math.max(200, Math.floor((node.clientWidth || fallback) - 4));
}
function buildMainCharts(labels) {
  for (const key of ["loss", "acc"]) {
    if (app.charts[key]) app.charts[key].destroy();
    const root = $(`#${key}-chart`);
    root.replaceChildren();
    const series = [{ label: "step" }];
    for (const label of labels) {
      const name = labels.length === 2 ? `${label} ` : "";
      series.push({ label: `${name}train`, stroke: SIDE_COLORS[label], width: 1.5, spanGaps: false });
      series.push({ label: `${name}val`, stroke: SIDE_COLORS[label], width: 2, dash: [6, 4], spanGaps: true,
                    points: { show: false } });
    }
    const opts = {
      width: chartWidth(root.parentElement, 520), height: 190, series,
      scales: { x: { time: false }, y: key === "loss" ? { distr: 3 } : { range: [0, 1] } },
      axes: [{ label: "step", labelSize: 16, labelFont: "11px system-ui, sans-serif" }, { size: 50, values: axisValues }],
      legend: { live: true },
    };
    app.charts[key] = new uPlot(opts, [[], ...labels.flatMap(() => [[], []])], root);
  }
}
function makeRatioChart(root, side) {
  const n = side.linear.length;
  const series = [{ label: "step" }];
  side.linear.forEach((name, i) => {
    const t = n > 1 ? i / (n - 1) : 0;
    series.push({ label: i === n - 1 ? `out (${name})` : `L${i + 1} (${name})`,
                  stroke: `hsl(${220 - 200 * t}, 70%, ${45 + 5 * t}%)`, width: 1.2, spanGaps: true });
  });
  const opts = {
    width: chartWidth(root.parentElement, 480), height: 150, series,
    scales: { x: { time: false }, y: { distr: 3 } }, axes: [{}, { size: 55, values: axisValues }],
    legend: { show: false },
    hooks: { draw: [(u) => {
      const y = u.valToPos(1e-3, "y", true);
      if (!isFinite(y)) return;
      const ctx = u.ctx;
      ctx.save(); ctx.setLineDash([5, 4]); ctx.strokeStyle = "#888"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
      ctx.restore();
    }] },
  };
  return new uPlot(opts, [[], ...side.linear.map(() => [])], root);
}

/* ------------------------------------------------------------------ updates */
function onUpdate(msg) {
  if (!app.ready) return;
  app.updates += 1;
  app.step = msg.step; app.epoch = msg.epoch;
  msg.runs.forEach((r, i) => {
    const side = app.sides[i];
    if (!side) return;
    r.steps.forEach((s, j) => {
      const loss = r.loss[j];
      if (loss === null) { side.train[s] = null; side.trainAcc[s] = null; return; }
      side.emaN += 1;
      side.ema = EMA * side.ema + (1 - EMA) * loss;
      side.emaAcc = EMA * side.emaAcc + (1 - EMA) * r.acc[j];
      const debias = 1 - Math.pow(EMA, side.emaN);
      side.train[s] = side.ema / debias;
      side.trainAcc[s] = side.emaAcc / debias;
    });
    for (const [s, loss, acc] of r.val) { side.val[s] = loss; side.valAcc[s] = acc; }
    for (const h of r.hist) side.hist.push(h);
    const stride = msg.stride;
    if (side.hist.length && side.hist.some((h) => h[0] % stride !== 0)) side.hist = side.hist.filter((h) => h[0] % stride === 0);
    for (const [s, ratios] of r.ratio) {
      side.ratioX.push(s);
      ratios.forEach((v, k) => side.ratioY[k].push(v !== null && v > 0 ? v : null));
    }
    for (const f of r.new_findings) side.log.push(f);
    side.findings = r.findings;
    if (r.diverged_at !== null) side.diverged = r.diverged_at;
    if (r.event) showNotice(r.event);
  });
  if (msg.boundary) msg.boundary.runs.forEach((b, i) => { if (app.sides[i]) app.sides[i].boundary = { ...b, step: msg.boundary.step }; });
  if (msg.finished && app.playing) { app.playing = false; syncPlay(); }
  scheduleRender();
}
function scheduleRender() {
  if (app.renderQueued) return;
  app.renderQueued = true;
  const wait = Math.max(0, 120 - (performance.now() - app.lastRender));
  setTimeout(() => requestAnimationFrame(render), wait);
}
function render() {
  app.renderQueued = false;
  app.lastRender = performance.now();
  renderStatus();
  const n = app.step;
  const xs = Array.from({ length: n }, (_, i) => i);
  const lossData = [xs], accData = [xs];
  for (const side of app.sides) {
    lossData.push(fill(side.train, n), fill(side.val, n));
    accData.push(fill(side.trainAcc, n), fill(side.valAcc, n));
  }
  app.charts.loss.setData(lossData);
  app.charts.acc.setData(accData);
  for (const side of app.sides) {
    side.ratioChart.setData([side.ratioX, ...side.ratioY]);
    drawHistograms(side);
    drawBoundary(side);
    renderFindings(side);
    const info = $(".side-info", side.node);
    const parts = [`${side.run.params.toLocaleString()} parameters`];
    const lastVal = lastDefined(side.valAcc);
    if (lastVal !== null) parts.push(`val accuracy ${lastVal.toFixed(3)}`);
    info.replaceChildren(el("span", { text: parts.join(" · ") }));
    if (side.diverged !== null) info.append(el("span", { class: "diverged", text: ` · diverged at step ${side.diverged}` }));
  }
}
function fill(arr, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = arr[i] === undefined ? null : arr[i];
  return out;
}
function lastDefined(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== undefined && arr[i] !== null) return arr[i];
  return null;
}
function renderStatus() {
  const d = app.ready ? app.ready.data : null;
  const per = d ? ` (${d.batches_per_epoch} batches an epoch)` : "";
  $("#stepinfo").textContent = app.ready ? `step ${app.step} · epoch ${app.epoch}${per}` : "";
}
function renderFindings(side) {
  const ul = $(".findings", side.node);
  ul.replaceChildren();
  if (!side.findings.length) ul.append(el("li", { class: "none", text: app.step ? "no findings: every layer looks healthy" : "findings appear after the first step" }));
  for (const f of side.findings) ul.append(el("li", {}, el("span", { text: f.message }), el("span", { class: "sugg", text: f.suggestion ? `; ${f.suggestion}` : "" })));
  const ol = $(".finding-log", side.node);
  if (ol.childElementCount !== side.log.length) {
    ol.replaceChildren(...side.log.map((f) => el("li", { text: `step ${f.step}: ${f.message}` })));
  }
}

/* ------------------------------------------------------------------ histograms over time (canvas) */
function drawHistograms(side) {
  const perLayer = $(".per-layer", side.node).checked;
  drawStrips($(".hist-act", side.node), side, 1, perLayer);
  drawStrips($(".hist-grad", side.node), side, 2, perLayer);
}
function drawStrips(canvas, side, which, perLayer) {
  const layers = side.layers.length;
  const rowH = Math.max(9, Math.min(34, Math.floor(420 / layers)));
  const labelW = 34;
  const cssW = Math.max(220, canvas.parentElement.clientWidth - 14);
  const cssH = rowH * layers + 14;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
    canvas.style.height = `${cssH}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const cols = side.hist;
  const plotW = cssW - labelW - 4;
  const ranges = [];
  let shared = [Infinity, -Infinity];
  for (let l = 0; l < layers; l++) {
    let lo = Infinity, hi = -Infinity;
    for (const c of cols) {
      const h = c[which][l];
      if (h && h[0] !== null) { lo = Math.min(lo, h[0]); hi = Math.max(hi, h[1]); }
    }
    ranges.push([lo, hi]);
    shared = [Math.min(shared[0], lo), Math.max(shared[1], hi)];
  }
  ctx.font = "9px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  const n = Math.max(cols.length, 60);
  const colW = plotW / n;
  for (let l = 0; l < layers; l++) {
    const y0 = l * rowH;
    let [lo, hi] = perLayer ? ranges[l] : shared;
    if (!(hi > lo)) { lo = (isFinite(lo) ? lo : 0) - 1; hi = (isFinite(hi) ? hi : 0) + 1; }
    const span = Math.max(Math.abs(lo), Math.abs(hi));
    if (lo < 0 && hi > 0) { lo = -span; hi = span; }       // symmetric about 0 when it straddles 0
    ctx.fillStyle = "#f0f2f6";
    ctx.fillRect(labelW, y0, plotW, rowH - 1);
    if (lo < 0 && hi > 0) {
      const yz = y0 + (rowH - 1) * (hi / (hi - lo));
      ctx.fillStyle = "#d5d9e2"; ctx.fillRect(labelW, yz, plotW, 0.6);
    }
    cols.forEach((c, ci) => {
      const h = c[which][l];
      if (!h || h[0] === null) return;
      const counts = h.slice(4);
      let max = 0;
      for (const v of counts) max = Math.max(max, v);
      if (!max) return;
      const bins = counts.length, width = (h[1] - h[0]) / bins;
      for (let b = 0; b < bins; b++) {
        if (!counts[b]) continue;
        const a = h[0] + b * width, z = a + width;
        let ya = y0 + (rowH - 1) * (hi - z) / (hi - lo), yb = y0 + (rowH - 1) * (hi - a) / (hi - lo);
        if (yb - ya < 1) { const mid = (ya + yb) / 2; ya = mid - 0.5; yb = mid + 0.5; }
        const t = Math.sqrt(counts[b] / max);
        ctx.fillStyle = `rgba(${Math.round(40 - 20 * t)}, ${Math.round(90 - 40 * t)}, ${Math.round(200 - 60 * t)}, ${0.15 + 0.85 * t})`;
        ctx.fillRect(labelW + ci * colW, Math.max(y0, ya), Math.max(colW, 1), Math.min(y0 + rowH - 1, yb) - Math.max(y0, ya));
      }
    });
    const last = cols.length ? cols[cols.length - 1][which][l] : null;
    ctx.fillStyle = "#39404f";
    ctx.fillText(`L${l + 1}`, 2, y0 + rowH / 2 - (rowH > 20 ? 5 : 0));
    if (rowH > 20 && last && last[3] !== null) { ctx.fillStyle = "#6b7385"; ctx.fillText(`σ ${fmt(last[3])}`, 2, y0 + rowH / 2 + 6); }
    else if (last && last[0] === null) { ctx.fillStyle = "#a32b1d"; ctx.fillText("NaN", 2, y0 + rowH / 2); }
  }
  ctx.fillStyle = "#6b7385";
  const scaleText = perLayer ? "each row: its own range" : `range ${fmt(shared[0])} … ${fmt(shared[1])}`;
  const first = cols.length ? cols[0][0] : 0, lastStep = cols.length ? cols[cols.length - 1][0] : 0;
  ctx.fillText(`steps ${first}–${lastStep} · ${scaleText}`, labelW, layers * rowH + 7);
}
function axisValues(u, vals) { return vals.map((v) => (v === null ? "" : fmtAxis(v))); }
function fmtAxis(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a < 1e-2 || a >= 1e4) return v.toExponential(0).replace("e+", "e");
  return String(+v.toPrecision(3));
}
function fmt(v) {
  if (v === null || !isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-2 || a >= 1e4) ? v.toExponential(1) : v.toFixed(a < 1 ? 3 : 1);
}

/* ------------------------------------------------------------------ decision boundary (canvas) */
function decode(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
function drawBoundary(side) {
  const data = app.ready.data;
  if (!data.two_d || !side.boundary || side.boundary.drawn) return;
  side.boundary.drawn = true;
  const canvas = $(".boundary canvas", side.node);
  const g = data.grid, cls = decode(side.boundary.cls), conf = decode(side.boundary.conf);
  const img = new ImageData(g, g);
  for (let i = 0; i < g * g; i++) {
    const c = cls[i] === 255 ? [160, 160, 160] : CLASS_COLORS[cls[i] % CLASS_COLORS.length];
    const t = 0.12 + 0.55 * (conf[i] / 255);
    img.data[4 * i] = Math.round(255 + (c[0] - 255) * t);
    img.data[4 * i + 1] = Math.round(255 + (c[1] - 255) * t);
    img.data[4 * i + 2] = Math.round(255 + (c[2] - 255) * t);
    img.data[4 * i + 3] = 255;
  }
  const off = document.createElement("canvas");
  off.width = g; off.height = g;
  off.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, W, H);
  const [x0, x1, y0, y1] = data.extent;
  for (const [x, y, c] of data.points) {
    const px = (x - x0) / (x1 - x0) * W, py = (y1 - y) / (y1 - y0) * H;
    const col = CLASS_COLORS[c % CLASS_COLORS.length];
    ctx.beginPath(); ctx.arc(px, py, 2.3, 0, 2 * Math.PI);
    ctx.fillStyle = `rgb(${col.join(",")})`; ctx.fill();
    ctx.lineWidth = 0.6; ctx.strokeStyle = "#fff"; ctx.stroke();
  }
  ctx.fillStyle = "rgba(255,255,255,.8)"; ctx.fillRect(0, H - 14, 64, 14);
  ctx.fillStyle = "#39404f"; ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`step ${side.boundary.step}`, 3, H - 4);
}

/* ------------------------------------------------------------------ the optimizer tab */
function requestTrajectories() {
  send({ type: "trajectories", state: { ...app.flat, tab: "opt" } });
}
function onTrajectories(msg) {
  clearError();
  if (msg.query) writeUrl(msg.query);
  const field = decode(msg.field.levels);
  const rules = Object.keys(msg.paths);
  app.traj = { msg, field, rules, frame: 0, playing: true, last: 0, background: null };
  buildTrajTable();
  buildFChart();
  syncTrajPlay();
  animate();
}
function syncTrajPlay() { $("#opt-play").textContent = app.traj && app.traj.playing ? "❚❚ pause" : "▶ play"; }
function toggleTrajPlay() {
  if (!app.traj) return;
  if (app.traj.frame >= app.traj.msg.steps) app.traj.frame = 0;
  app.traj.playing = !app.traj.playing;
  syncTrajPlay();
  if (app.traj.playing) animate();
}
function viridis(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1), i = Math.floor(x), f = x - i;
  return stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
}
function surfaceBackground() {
  const t = app.traj, n = t.msg.field.n;
  const img = new ImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const level = t.field[i] / 255;
    const band = Math.floor(level * 18), right = i % n < n - 1 ? Math.floor(t.field[i + 1] / 255 * 18) : band;
    const below = i + n < n * n ? Math.floor(t.field[i + n] / 255 * 18) : band;
    const c = viridis(level).map((v) => (band !== right || band !== below ? Math.round(v * 0.72) : v));
    img.data.set([...c, 255], 4 * i);
  }
  const off = document.createElement("canvas");
  off.width = n; off.height = n;
  off.getContext("2d").putImageData(img, 0, 0);
  return off;
}
function animate() {
  const t = app.traj;
  if (!t) return;
  const speed = Math.pow(2, Number($("#opt-speed").value));   // steps per frame
  const canvas = $("#surface-canvas"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, m = t.msg;
  if (!t.background) t.background = surfaceBackground();
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(t.background, 0, 0, W, H);
  const [x0, x1] = m.xlim, [y0, y1] = m.ylim;
  const px = (x) => Math.max(-1e4, Math.min(1e4, (x - x0) / (x1 - x0) * W));
  const py = (y) => Math.max(-1e4, Math.min(1e4, (y1 - y) / (y1 - y0) * H));
  if (m.minimum) { ctx.fillStyle = "#fff"; ctx.font = "16px sans-serif"; ctx.fillText("★", px(m.minimum[0]) - 6, py(m.minimum[1]) + 6); }
  ctx.beginPath(); ctx.arc(px(m.start[0]), py(m.start[1]), 4, 0, 2 * Math.PI); ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
  for (const rule of t.rules) {
    const pts = m.paths[rule].points, k = Math.min(t.frame, pts.length - 1);
    ctx.strokeStyle = RULE_COLORS[rule]; ctx.lineWidth = 1.6;
    ctx.beginPath();
    for (let i = 0; i <= k; i++) { const X = px(pts[i][0]), Y = py(pts[i][1]); if (i) ctx.lineTo(X, Y); else ctx.moveTo(X, Y); }
    ctx.stroke();
    ctx.beginPath(); ctx.arc(px(pts[k][0]), py(pts[k][1]), 4, 0, 2 * Math.PI);
    ctx.fillStyle = RULE_COLORS[rule]; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke();
  }
  ctx.fillStyle = "rgba(0,0,0,.55)"; ctx.fillRect(0, 0, 120, 18);
  ctx.fillStyle = "#fff"; ctx.font = "11px system-ui, sans-serif"; ctx.fillText(`step ${t.frame} / ${m.steps}`, 5, 13);
  $("#surface-title").textContent = `${m.surface}: f = ${m.formula}, from (${m.start.map((v) => +v.toPrecision(3)).join(", ")}); goal ${m.goal}`;
  updateTrajTable();
  if (t.playing && t.frame < m.steps) {
    t.frame = Math.min(m.steps, t.frame + speed);
    requestAnimationFrame(animate);
  } else if (t.frame >= m.steps) { t.playing = false; syncTrajPlay(); }
}
function buildTrajTable() {
  const body = $("#rule-table tbody");
  body.replaceChildren();
  const names = app.schema.run.find((f) => f.key === "opt");
  for (const rule of app.traj.rules) {
    const p = app.traj.msg.paths[rule];
    const hp = Object.entries(p.hyperparameters).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`).join(", ");
    body.append(el("tr", { "data-rule": rule },
      el("td", {}, el("span", { class: "sw", style: `background:${RULE_COLORS[rule]}` }), names.names[names.choices.indexOf(rule)]),
      el("td", { text: hp }), el("td", { class: "reached" }), el("td", { class: "fnow" })));
  }
}
function updateTrajTable() {
  const t = app.traj;
  for (const rule of t.rules) {
    const p = t.msg.paths[rule], row = $(`#rule-table tr[data-rule="${rule}"]`);
    if (!row) continue;
    const k = Math.min(t.frame, p.f.length - 1);
    const reached = p.reached !== null && p.reached <= t.frame ? `step ${p.reached}` : (p.diverged && t.frame >= p.f.length - 1 ? "diverged" : "—");
    $(".reached", row).textContent = reached;
    $(".fnow", row).textContent = fmt(p.f[k]);
  }
  if (t.fchart && (t.frame % 8 === 0 || t.frame >= t.msg.steps)) {
    const n = Math.min(t.frame + 1, t.msg.steps + 1);
    const xs = Array.from({ length: n }, (_, i) => i);
    t.fchart.setData([xs, ...t.rules.map((r) => xs.map((i) => (i < t.msg.paths[r].f.length ? t.msg.paths[r].f[i] : null)))]);
  }
}
function buildFChart() {
  const t = app.traj, root = $("#f-chart");
  if (t.fchart) t.fchart.destroy();
  root.replaceChildren();
  const series = [{ label: "step" }, ...t.rules.map((r) => ({ label: r, stroke: RULE_COLORS[r], width: 1.5 }))];
  t.fchart = new uPlot({ width: chartWidth(root.parentElement, 420), height: 220, series,
                         scales: { x: { time: false }, y: { distr: 4, asinh: 1e-6 } }, axes: [{}, { size: 60, values: axisValues }] },
                       [[], ...t.rules.map(() => [])], root);
}

/* ------------------------------------------------------------------ boot */
app.flat = parseQuery(location.search);
wireButtons();
connect();
