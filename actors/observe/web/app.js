// The web view of a synchronizer: polls the endpoint's JSON routes while the page is visible.
// No framework, no build step: /live (the tree, rates, event partitions), /problems, /object/<model>/<id>.
"use strict";

const LIVE_EVERY = 2000; // ms between polls of /live (and of the open object's page)
const PROBLEMS_EVERY = 4000; // ms between polls of /problems
const CORE_WHY = "core: no synchronizer runs in this process, so no why here: the status fields below say how its last sync and policy run went.";

const $ = (id) => document.getElementById(id);
let timer = null;
let lastProblems = 0;
let stepsSeen = new Set();
let modelsSeen = new Set();

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function when(seconds) {
  if (!seconds) return "—";
  const d = new Date(seconds * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function ago(seconds, now) {
  if (!seconds) return "never";
  const s = Math.round(now - seconds);
  if (s < 0) return `in ${-s} s`;
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return when(seconds);
}

function badge(state) {
  return `<span class="badge s-${esc(state)}">${esc(state)}</span>`;
}

function objectLink(model, id) {
  return `<a href="#/object/${encodeURIComponent(model)}/${encodeURIComponent(id)}">${esc(model)} ${esc(id)}</a>`;
}

function sparkline(history) {
  const points = history.slice(-60);
  if (points.length < 2) return "";
  const w = 80, h = 18, max = Math.max(...points, 0.001);
  const step = w / (points.length - 1);
  const coords = points.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`);
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="rate over the last minute"><polyline points="${coords.join(" ")}"/></svg>`;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

function cells(row, labels) {
  return row.map((html, i) => `<td data-label="${esc(labels[i][0])}"${labels[i][1] ? ` class="${labels[i][1]}"` : ""}>${html}</td>`).join("");
}

const TREE_COLUMNS = [["Actor"], ["State"], ["Restarts", "num"], ["Done", "num"], ["Failed", "num"], ["Rate"], ["Queue", "num"], ["Last error", "error"]];

function renderLive(live) {
  const tree = live.tree;
  $("name").textContent = tree.name;
  $("state").outerHTML = `<span id="state" class="badge s-${esc(tree.state)}">${esc(tree.state)}</span>`;
  document.title = `actors: ${tree.name}`;
  $("tree-title").setAttribute("tabindex", "-1");
  // core has no actor tree: its note goes where the tree goes.
  const rows = live.note
    ? [`<tr class="note"><td colspan="${TREE_COLUMNS.length}" id="tree-note">${esc(live.note)}</td></tr>`]
    : [`<tr data-child="supervisor" class="child-supervisor">${cells(["supervisor", badge(tree.state), "", "", "", "", "", ""], TREE_COLUMNS)}</tr>`];
  for (const c of tree.children) {
    stepsSeen.add(c.name);
    const rate = live.rates[c.name] || { per_second: 0, history: [] };
    const lastError = c.last_error || c.detail.last_event_error || "";
    rows.push(`<tr data-child="${esc(c.name)}" data-state="${esc(c.state)}" class="child-${esc(c.kind)}">` + cells([
      `${esc(c.name)}<span class="kind">${esc(c.kind)}</span>`,
      badge(c.state),
      esc(c.restarts),
      `<span class="done">${esc(c.done)}</span>`,
      esc(c.failed),
      `<span class="rate">${rate.per_second.toFixed(1)}/s</span>${sparkline(rate.history)}`,
      esc(c.queue_depth),
      esc(lastError),
    ], TREE_COLUMNS) + "</tr>");
  }
  $("tree").tBodies[0].innerHTML = rows.join("");
  const loadErrors = tree.load_errors.map((e) => `<li><code>${esc(e.step || e.path)}</code>: ${esc(e.error)}</li>`);
  $("load-errors").innerHTML = loadErrors.length ? `<h3>Steps not loaded</h3><ul>${loadErrors.join("")}</ul>` : "";
  renderEvents(live);
  fillSelect($("filter-step"), stepsSeen);
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

const PARTITION_COLUMNS = [["Step"], ["Topic"], ["Partition", "num"], ["Lag", "num"], ["Last progress"]];

function renderEvents(live) {
  const steps = Object.keys(live.dead_letters);
  $("events").hidden = steps.length === 0;
  $("nav-events").hidden = steps.length === 0;
  $("partitions").tBodies[0].innerHTML = live.partitions.map((p) => `<tr data-partition="${esc(p.topic)}[${esc(p.partition)}]">` + cells([
    esc(p.step), esc(p.topic), esc(p.partition), p.lag === null ? "?" : esc(p.lag),
    `${esc(ago(p.last_progress, live.now))}${p.stalled ? " " + badge("stalled") : ""}`,
  ], PARTITION_COLUMNS) + "</tr>").join("") || `<tr><td colspan="5" class="quiet">no partition assigned yet</td></tr>`;
  $("dead-letters").innerHTML = steps.map((step) => {
    const d = live.dead_letters[step];
    const last = (d.last || []).slice().reverse().map((x) => `<li>${esc(when(x.at))}: ${esc(x.topic)}[${esc(x.partition)}] offset ${esc(x.offset)} → ${esc(x.to)}: <span class="error">${esc(x.error)}</span></li>`);
    return `<div class="dead" data-dead="${esc(step)}"><strong>${esc(step)}</strong>: ${esc(d.count)} dead letter(s)${last.length ? `, the last:<ul>${last.join("")}</ul>` : ""}</div>`;
  }).join("");
}

function fillSelect(select, values) {
  const have = new Set([...select.options].map((o) => o.value));
  for (const v of [...values].sort()) {
    if (!have.has(v)) select.add(new Option(v, v));
  }
}

const PROBLEM_COLUMNS = [["Object"], ["Step"], ["Attempts", "num"], ["Last error", "error"], ["Next retry"], ["Blocked by"]];

async function refreshProblems() {
  const model = $("filter-model").value || "_";
  const step = $("filter-step").value;
  const rows = await getJSON(`problems/${encodeURIComponent(model)}` + (step ? `/${encodeURIComponent(step)}` : ""));
  lastProblems = Date.now();
  const now = Date.now() / 1000;
  for (const r of rows) modelsSeen.add(r.model);
  fillSelect($("filter-model"), modelsSeen);
  $("problem-table").tBodies[0].innerHTML = rows.map((r) => `<tr data-object="${esc(r.model)}/${esc(r.id)}" data-reason="${esc(r.reason)}">` + cells([
    `${objectLink(r.model, r.id)} ${badge(r.reason)}`,
    esc(r.step || "—"), esc(r.attempts), esc(r.last_error || ""),
    r.next_retry ? `${esc(when(r.next_retry))} (${esc(ago(r.next_retry, now))})` : "—",
    esc(r.blocked_by || ""),
  ], PROBLEM_COLUMNS) + "</tr>").join("");
  $("problems-empty").hidden = rows.length > 0;
}

function renderWhy(w) {
  if (w === null) { // core: no synchronizer here to say why
    $("why").className = "why";
    $("why").innerHTML = `<p>${esc(CORE_WHY)}</p>`;
    return;
  }
  const errors = w.errors.length ? `<p>Errors: ${w.errors.map((e) => `<code>${esc(e)}</code>`).join(" then ")}</p>` : "";
  const until = w.until ? `<p>Tried again at ${esc(when(w.until))}.</p>` : "";
  const blocked = w.blocked_by ? `<p>Waits for ${objectLink(w.blocked_by[0], w.blocked_by[1])}.</p>` : "";
  $("why").className = `why r-${w.reason}`;
  $("why").innerHTML = `<p>${badge(w.reason)} ${esc(w.message)}</p>${w.step ? `<p>Step: ${esc(w.step)}; failed attempts: ${esc(w.attempts)}</p>` : ""}${errors}${until}${blocked}`;
}

async function refreshObject(model, id) {
  const page = await getJSON(`object/${encodeURIComponent(model)}/${encodeURIComponent(id)}`);
  $("object-title").textContent = `${page.model} ${page.id}`;
  renderWhy(page.why);
  $("status-fields").tBodies[0].innerHTML = page.status.map((s) => `<tr data-field="${esc(s.field)}"><th scope="row"><code>${esc(s.field)}</code></th><td><code>${esc(JSON.stringify(s.value))}</code></td><td>${esc(s.meaning)}</td></tr>`).join("");
  $("timeline").innerHTML = page.timeline.map((e) => `<li data-kind="${esc(e.kind)}"><time>${esc(when(e.at))}</time><span class="badge">${esc(e.kind)}</span><span>${esc(e.text)}</span></li>`).join("") || `<li class="quiet">nothing recorded</li>`;
  $("timeline-note").textContent = page.timeline_note;
  const own = Object.entries(page.fields).filter(([k]) => !page.status.some((s) => s.field === k));
  $("fields").tBodies[0].innerHTML = own.map(([k, v]) => `<tr><th scope="row"><code>${esc(k)}</code></th><td><code>${esc(JSON.stringify(v))}</code></td></tr>`).join("");
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function route() {
  const match = location.hash.match(/^#\/object\/([^/]+)\/(\d+)$/);
  return match ? { model: decodeURIComponent(match[1]), id: match[2] } : null;
}

async function tick() {
  timer = null;
  if (document.hidden) return; // a hidden page asks for nothing; visibilitychange starts it again
  const obj = route();
  $("overview").hidden = obj !== null;
  $("object").hidden = obj === null;
  try {
    if (obj) {
      await refreshObject(obj.model, obj.id);
    } else {
      renderLive(await getJSON("live"));
      if (Date.now() - lastProblems >= PROBLEMS_EVERY) await refreshProblems();
    }
  } catch (error) {
    $("updated").textContent = `not updated: ${error.message}`;
  }
  if (!document.hidden && timer === null) timer = setTimeout(tick, LIVE_EVERY);
}

function now() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
  tick();
}

window.addEventListener("hashchange", () => {
  lastProblems = 0;
  now();
  (route() ? $("object-title") : $("tree-title")).focus();
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) now(); });
for (const id of ["filter-model", "filter-step"]) $(id).addEventListener("change", () => { lastProblems = 0; now(); });
$("filters").addEventListener("submit", (e) => e.preventDefault());
for (const a of document.querySelectorAll("nav a[data-section]")) {
  a.addEventListener("click", (e) => {
    e.preventDefault();
    if (route()) location.hash = "#/";
    const target = $(a.dataset.section);
    target.scrollIntoView();
    target.querySelector("h2").setAttribute("tabindex", "-1");
    target.querySelector("h2").focus();
  });
}
now();
