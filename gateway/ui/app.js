// The cluster dashboard. Reads the gateway's documented JSON endpoints only:
//   GET /api/cluster          nodes, discovery state, request/error/latency series (every 2 s)
//   GET /api/cluster/models   models, their nodes, features and classes
//   POST /api/predict/gdp_growth_rate?model=...          the prediction form
//   POST /api/models/launch/{model}, GET and DELETE /api/models/instances/{...}   lifecycle
// Every piece of data is rendered as text (textContent / text nodes), never as markup.
"use strict";

const POLL_MS = 2000;
const MODELS_EVERY = 15; // polls between two model refreshes when nothing changed
const INSTANCES_EVERY = 3; // polls between two instance-list refreshes

const state = {
  summary: null,
  models: null,
  modelsKey: "",
  nodesKey: null,
  polls: 0,
  token: null, // the admin token, in memory only
  tokenRequired: false,
  busy: false,
};

// === small DOM helpers ===

const $ = (id) => document.getElementById(id);

/** Creates an element; `attrs.text` sets its text, `attrs.class` its class, others attributes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
}

function fmtRate(v) {
  return v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return v.toFixed(3);
  if (v < 100) return v.toFixed(2);
  return v.toFixed(0);
}

/** Fetches JSON; resolves to {status, ok, body} (body: parsed JSON, or text when not JSON). */
async function call(method, url, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const resp = await fetch(url, { method, headers, body, cache: "no-store" });
  const text = await resp.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (_) {
    // not JSON: keep the text
  }
  return { status: resp.status, statusText: resp.statusText, ok: resp.ok, body: parsed };
}

/** A readable message for a failed answer: `403 Forbidden: <detail>`. */
function describeError(answer) {
  let detail = answer.body;
  if (detail && typeof detail === "object" && "detail" in detail) detail = detail.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
  else if (detail && typeof detail === "object") detail = JSON.stringify(detail);
  const head = `${answer.status} ${answer.statusText || ""}`.trim();
  return detail ? `${head}: ${detail}` : head;
}

// === the summary: discovery, nodes, charts ===

async function poll() {
  try {
    const answer = await call("GET", "/api/cluster");
    if (!answer.ok) throw new Error(describeError(answer));
    state.summary = answer.body;
    $("load-error").hidden = true;
    renderSummary();
    const key = JSON.stringify(state.summary.nodes.map((n) => [n.addr, n.models]));
    if (key !== state.nodesKey || state.polls % MODELS_EVERY === 0) {
      state.nodesKey = key;
      await loadModels();
    }
    if (state.polls % INSTANCES_EVERY === 0 && canListQuietly()) await listInstances();
  } catch (error) {
    const banner = $("load-error");
    banner.textContent = `Cannot read the cluster summary (GET /api/cluster): ${error.message}. Retrying every ${POLL_MS / 1000} s.`;
    banner.hidden = false;
  } finally {
    state.polls += 1;
    setTimeout(poll, POLL_MS);
  }
}

function renderSummary() {
  const s = state.summary;
  const d = $("discovery-state");
  if (d.dataset.state !== s.discovery) {
    d.dataset.state = s.discovery;
    d.textContent =
      s.discovery === "ok"
        ? "ok"
        : s.discovery === "stale"
          ? "stale (Consul unreachable; serving the last known nodes)"
          : s.discovery === "recovering"
            ? "recovering (Consul is back; some last known nodes are kept for a grace period)"
            : s.discovery;
  }
  setText("updated", `updated ${new Date().toLocaleTimeString()}`);
  setText("node-count", `(${s.nodes.length} healthy)`);
  state.tokenRequired = s.admin_token_required;
  $("token-note").hidden = !s.admin_token_required;

  const tbody = $("nodes-table").tBodies[0];
  const rows = s.nodes.map((n) => {
    const r = n.stats.recent;
    const consul = n.ejected ? `${n.consul}, ejected by the gateway` : n.consul;
    // data-label: the column's name, shown beside each value when a phone stacks the rows
    // (the roles keep the table a table for screen readers then).
    const cell = (cls, label, text) => el("td", { role: "cell", class: cls, "data-label": label, text });
    return el(
      "tr",
      { role: "row", "data-addr": n.addr },
      el("th", { role: "rowheader", scope: "row", class: "addr", text: n.addr }),
      cell("instance", "Instance", n.instance || (n.service_id !== n.addr ? n.service_id : "–")),
      cell("models", "Models", n.models ? n.models.join(", ") : "unknown"),
      cell("consul", "Consul", consul),
      cell("num rps", "Requests/s", fmtRate(r.requests_per_sec)),
      cell("num p50", "p50 ms", fmtMs(r.p50_ms)),
      cell("num p99", "p99 ms", fmtMs(r.p99_ms)),
      cell("num eps", "Errors/s", fmtRate(r.errors_per_sec)),
    );
  });
  tbody.replaceChildren(...rows);
  $("no-nodes").hidden = s.nodes.length > 0;

  // The scope selector: the whole cluster, then each node (the choice is kept).
  const scope = $("scope");
  const chosen = scope.value;
  const wanted = [""].concat(s.nodes.map((n) => n.addr));
  const have = Array.from(scope.options).map((o) => o.value);
  if (JSON.stringify(wanted) !== JSON.stringify(have)) {
    scope.replaceChildren(
      el("option", { value: "", text: "Whole cluster" }),
      ...s.nodes.map((n) => el("option", { value: n.addr, text: `Node ${n.addr}` })),
    );
    scope.value = wanted.includes(chosen) ? chosen : "";
  }
  drawCharts();
}

function drawCharts() {
  const s = state.summary;
  if (!s) return;
  const addr = $("scope").value;
  const node = s.nodes.find((n) => n.addr === addr);
  const series = node ? node.stats : s.cluster;
  const who = node ? `node ${node.addr}` : "the whole cluster";
  const h = series.history;
  const r = series.recent;
  setText(
    "cluster-now",
    `last 10 s: ${fmtRate(r.requests_per_sec)} requests/s, p50 ${fmtMs(r.p50_ms)} ms, p99 ${fmtMs(r.p99_ms)} ms, ${fmtRate(r.errors_per_sec)} errors/s`,
  );
  lineChart($("chart-rate"), h.bucket_secs, [
    { values: h.requests_per_sec, cls: "line-a" },
    { values: h.errors_per_sec, cls: "line-err" },
  ], fmtRate);
  $("chart-rate").setAttribute(
    "aria-label",
    `Requests per second of ${who} over the last 5 minutes; last 10 s: ${fmtRate(r.requests_per_sec)} requests/s, ${fmtRate(r.errors_per_sec)} errors/s`,
  );
  lineChart($("chart-latency"), h.bucket_secs, [
    { values: h.p50_ms, cls: "line-a" },
    { values: h.p99_ms, cls: "line-b" },
  ], fmtMs);
  $("chart-latency").setAttribute(
    "aria-label",
    `Latency of ${who} over the last 5 minutes; last 10 s: p50 ${fmtMs(r.p50_ms)} ms, p99 ${fmtMs(r.p99_ms)} ms`,
  );
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, String(value));
  }
  return node;
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** Draws lines (one per series, broken where a value is null) over a time axis. */
function lineChart(target, bucketSecs, lines, fmt) {
  const W = 600, H = 220, left = 64, right = 10, top = 12, bottom = 28;
  const n = Math.max(...lines.map((l) => l.values.length), 2);
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.values.filter((v) => v !== null))));
  const x = (i) => left + (i / (n - 1)) * (W - left - right);
  const y = (v) => top + (1 - v / max) * (H - top - bottom);
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    parts.push(svg("line", { x1: left, x2: W - right, y1: y(max * f), y2: y(max * f), class: "grid" }));
    parts.push(svg("text", { x: left - 6, y: y(max * f) + 4, class: "tick", "text-anchor": "end", text: fmt(max * f) }));
  }
  const span = ((n - 1) * bucketSecs) / 60;
  const ticks = [[0, `−${span.toFixed(0)} min`], [0.5, `−${(span / 2).toFixed(1)} min`], [1, "now"]];
  for (const [f, label] of ticks) {
    const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
    parts.push(svg("text", { x: left + f * (W - left - right), y: H - 6, class: "tick", "text-anchor": anchor, text: label }));
  }
  for (const line of lines) {
    let points = [];
    const flush = () => {
      if (points.length === 1) parts.push(svg("circle", { cx: points[0][0], cy: points[0][1], r: 2, class: `dot ${line.cls}` }));
      else if (points.length > 1)
        parts.push(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: `line ${line.cls}` }));
      points = [];
    };
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) flush();
      else points.push([x(i).toFixed(1), y(v).toFixed(1)]);
    });
    flush();
  }
  target.replaceChildren(...parts);
}

// === models and the prediction form ===

async function loadModels() {
  const answer = await call("GET", "/api/cluster/models");
  if (!answer.ok) throw new Error(`GET /api/cluster/models: ${describeError(answer)}`);
  const key = JSON.stringify(answer.body);
  state.models = answer.body.models;
  if (key === state.modelsKey) return;
  state.modelsKey = key;
  renderModels();
  renderLaunchChoices();
}

function renderModels() {
  const list = $("model-list");
  const empty = $("models-empty");
  empty.textContent = state.models.length ? "" : "No healthy node serves a model.";
  empty.hidden = state.models.length > 0;
  // Keep what the user typed in forms that stay, and which cards are open (the first one
  // is, at first).
  const typed = {};
  for (const input of list.querySelectorAll("input[data-feature]")) {
    typed[`${input.dataset.model}\u0000${input.dataset.feature}`] = input.value;
  }
  const cards = Array.from(list.querySelectorAll("details.model"));
  const open = new Set(cards.filter((d) => d.open).map((d) => d.dataset.model));
  if (!cards.length && state.models.length) open.add(state.models[0].name);
  list.replaceChildren(...state.models.map((m, i) => modelCard(m, i, typed, open.has(m.name))));
}

function modelCard(model, index, typed, open) {
  const id = `model-${index}`;
  const card = el("details", { class: "model", "data-model": model.name, open });
  const nodes = model.nodes.length === 1 ? "1 node" : `${model.nodes.length} nodes`;
  card.append(
    el(
      "summary",
      {},
      el("h3", { id: `${id}-h`, text: model.name }),
      el("span", { class: "muted", text: ` ${nodes}, ${model.features.length} features${model.estimator ? `, ${model.estimator}` : ""}` }),
    ),
  );
  const facts = el("dl", { class: "facts" });
  facts.append(el("dt", { text: "Nodes" }), el("dd", { class: "model-nodes", text: model.nodes.join(", ") || "none" }));
  if (model.estimator) facts.append(el("dt", { text: "Estimator" }), el("dd", { text: model.estimator }));
  if (model.classes) {
    facts.append(el("dt", { text: "Classes" }), el("dd", { class: "classes", text: model.classes.map(String).join(", ") }));
  }
  card.append(facts);
  if (!model.features.length) {
    card.append(el("p", { class: "muted", text: "No node described this model's features, so there is no form for it." }));
    return card;
  }
  const form = el("form", { class: "predict", "data-model": model.name, novalidate: true });
  const fields = el("fieldset");
  fields.append(el("legend", { text: `Predict with ${model.name}` }));
  model.features.forEach((f, j) => {
    const fid = `${id}-f${j}`;
    const input = el("input", {
      id: fid,
      name: f.name,
      "data-feature": f.name,
      "data-model": model.name,
      "data-type": f.type,
      "data-nullable": f.nullable ? "true" : "false",
      type: "text",
      inputmode: f.type === "number" ? "decimal" : null,
      autocomplete: "off",
      "aria-describedby": `${fid}-err`,
    });
    input.value = typed[`${model.name}\u0000${f.name}`] || "";
    fields.append(
      el(
        "div",
        { class: "field" },
        el("label", { for: fid }, f.name, el("span", { class: "type", text: ` (${f.type}${f.nullable ? ", empty = missing" : ""})` })),
        input,
        el("p", { id: `${fid}-err`, class: "field-error", "data-error-for": f.name }),
      ),
    );
  });
  fields.append(el("button", { type: "submit", text: "Predict" }));
  form.append(fields);
  const out = el("div", { class: "answer", role: "status", "aria-live": "polite", id: `${id}-answer` });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    predict(model, form, out);
  });
  card.append(form, out);
  return card;
}

/** One row from the form: numbers for numeric features when the text is one, else the text
 * itself (the node says what is wrong with it); an empty field is `null` (a missing value)
 * where the model accepts one, else left out (the node says it is required). */
function rowFrom(form) {
  const row = {};
  for (const input of form.querySelectorAll("input[data-feature]")) {
    const text = input.value.trim();
    if (text === "") {
      if (input.dataset.nullable === "true") row[input.dataset.feature] = null;
      continue;
    }
    const n = Number(text);
    row[input.dataset.feature] = input.dataset.type === "number" && Number.isFinite(n) ? n : text;
  }
  return row;
}

async function predict(model, form, out) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  for (const i of form.querySelectorAll("input")) i.removeAttribute("aria-invalid");
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  out.replaceChildren(el("p", { text: "Predicting…" }));
  try {
    const row = rowFrom(form);
    const answer = await call("POST", `/api/predict/gdp_growth_rate?model=${encodeURIComponent(model.name)}`, { json: row });
    const parts = [];
    if (answer.ok && answer.body && Array.isArray(answer.body.prediction)) {
      parts.push(
        el("p", {}, "Prediction: ", el("output", { class: "prediction", text: answer.body.prediction.map(String).join(", ") })),
        ...(Array.isArray(answer.body.probabilities) && Array.isArray(answer.body.classes)
          ? [el("p", {}, "Probabilities: ", el("output", {
              class: "probabilities",
              text: answer.body.probabilities[0].map((p, k) => `${String(answer.body.classes[k])} ${Number(p).toFixed(3)}`).join(", "),
            }))]
          : []),
        el("p", { class: "muted", text: `${answer.status} from model ${answer.body.model}` }),
      );
    } else if (answer.status === 422 && answer.body && Array.isArray(answer.body.detail)) {
      const unplaced = [];
      let first = null;
      for (const e of answer.body.detail) {
        const field = (e.loc || []).filter((part) => typeof part === "string" && part !== "body").pop();
        const slot = field === undefined ? null : Array.from(form.querySelectorAll(".field-error")).find((p) => p.dataset.errorFor === field);
        if (slot) {
          slot.textContent = slot.textContent ? `${slot.textContent}; ${e.msg}` : e.msg;
          const input = $(slot.id.replace(/-err$/, ""));
          input.setAttribute("aria-invalid", "true");
          first = first || input;
        } else {
          unplaced.push(`${(e.loc || []).join(".")}: ${e.msg}`);
        }
      }
      parts.push(el("p", { class: "error", text: "422: the node refused the row; see the fields marked." }));
      for (const text of unplaced) parts.push(el("p", { class: "error", text }));
      if (first) first.focus();
    } else {
      parts.push(el("p", { class: "error", text: describeError(answer) }));
    }
    const raw = el("details", {}, el("summary", { text: "Answer as JSON" }), el("pre", { text: JSON.stringify(answer.body, null, 2) }));
    parts.push(raw);
    out.replaceChildren(...parts);
  } catch (error) {
    out.replaceChildren(el("p", { class: "error", text: `The request failed: ${error.message}` }));
  } finally {
    button.disabled = false;
  }
}

// === instances: launch, list, stop ===

function renderLaunchChoices() {
  const select = $("launch-model");
  const chosen = select.value;
  const names = state.models.map((m) => m.name);
  const have = Array.from(select.options).map((o) => o.value);
  if (JSON.stringify(names) === JSON.stringify(have)) return;
  select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (names.includes(chosen)) select.value = chosen;
  if (canListQuietly()) listInstances();
}

function canListQuietly() {
  return !state.tokenRequired || state.token !== null;
}

/** Resolves to the admin token (asking for it when needed and unknown), or `undefined` when
 * none is needed; rejects when the user cancels. */
function adminToken() {
  if (!state.tokenRequired) return Promise.resolve(undefined);
  if (state.token !== null) return Promise.resolve(state.token);
  const dialog = $("token-dialog");
  const form = $("token-form");
  const input = $("token-input");
  input.value = "";
  return new Promise((resolve, reject) => {
    const done = (token) => {
      form.removeEventListener("submit", onSubmit);
      $("token-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      input.value = "";
      dialog.close();
      if (token === null) reject(new Error("cancelled: no admin token given"));
      else {
        state.token = token;
        resolve(token);
      }
    };
    const onSubmit = (event) => {
      event.preventDefault();
      if (input.value) done(input.value);
    };
    const onCancel = (event) => {
      event.preventDefault();
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    $("token-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
}

/** A lifecycle call with the admin token; a 401 or 403 forgets the token (asked again next). */
async function lifecycle(method, url) {
  const token = await adminToken();
  const headers = token === undefined ? {} : { Authorization: `Bearer ${token}` };
  const answer = await call(method, url, { headers });
  if (answer.status === 401 || answer.status === 403) state.token = null;
  return answer;
}

function showLifecycle(status, error) {
  setText("lifecycle-status", status || "");
  const e = $("lifecycle-error");
  e.textContent = error || "";
  e.hidden = !error;
}

async function listInstances(explicit) {
  const model = $("launch-model").value;
  if (!model) return;
  try {
    const answer = await lifecycle("GET", `/api/models/instances/${encodeURIComponent(model)}`);
    if (!answer.ok) {
      showLifecycle("", `Listing the instances of ${model} failed: ${describeError(answer)}`);
      return;
    }
    setText("instances-caption", `Instances of ${model}`);
    const rows = answer.body.instances.map((inst) =>
      el(
        "tr",
        { "data-id": inst.id },
        el("th", { scope: "row", text: inst.name }),
        el("td", { class: "id", title: inst.id, text: inst.id.slice(0, 12) }),
        el("td", { text: inst.status }),
        el("td", {}, stopButton(inst)),
      ),
    );
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted", text: `No instance of ${model} in this cluster's runtime.` })));
    $("instances-table").tBodies[0].replaceChildren(...rows);
    if (explicit) showLifecycle(`Listed ${answer.body.instances.length} instance(s) of ${model}.`, "");
  } catch (error) {
    if (explicit) showLifecycle("", `Listing the instances failed: ${error.message}`);
  }
}

function stopButton(inst) {
  const button = el("button", { type: "button", class: "stop", "aria-label": `Stop ${inst.name}`, text: "Stop" });
  button.addEventListener("click", () => runAction(button, `Stopping ${inst.name}…`, async () => {
    const answer = await lifecycle("DELETE", `/api/models/instances/${encodeURIComponent(inst.id)}`);
    if (!answer.ok) throw new Error(`Stopping ${inst.name} failed: ${describeError(answer)}`);
    return `Stopped ${inst.name}; its row leaves the nodes table once Consul drops it.`;
  }));
  return button;
}

/** Runs one lifecycle action at a time, showing its progress, outcome or error. */
async function runAction(button, progress, action) {
  if (state.busy) return;
  state.busy = true;
  button.disabled = true;
  showLifecycle(progress, "");
  try {
    showLifecycle(await action(), "");
  } catch (error) {
    showLifecycle("", error.message);
  } finally {
    button.disabled = false;
    state.busy = false;
  }
  if (canListQuietly()) await listInstances();
}

function setup() {
  $("launch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const model = $("launch-model").value;
    if (!model) {
      showLifecycle("", "No model to launch: no healthy node lists one.");
      return;
    }
    runAction($("launch"), `Launching a node for ${model}… (answers once the node has started)`, async () => {
      const answer = await lifecycle("POST", `/api/models/launch/${encodeURIComponent(model)}`);
      if (!answer.ok) throw new Error(`Launching ${model} failed: ${describeError(answer)}`);
      return `Launched ${answer.body.container_name} (${answer.body.container_id.slice(0, 12)}); it joins the nodes table once its Consul check passes.`;
    });
  });
  $("instances-refresh").addEventListener("click", () => listInstances(true));
  $("launch-model").addEventListener("change", () => {
    if (canListQuietly()) listInstances();
  });
  $("scope").addEventListener("change", drawCharts);
  poll();
}

document.addEventListener("DOMContentLoaded", setup);
