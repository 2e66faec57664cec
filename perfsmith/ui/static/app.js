// perfsmith's chat UI: plain JavaScript, no build step, no network but the server's own API.
// Everything on screen is drawn from the run's event stream (GET /runs/{id}/events), so a
// live run and a reopened one look the same: reopening replays the events.
"use strict";

const TERMINAL = new Set(["done", "failed", "cancelled", "interrupted"]);
const state = {
  run: null,          // the open run (RunOut)
  lastSeq: 0,
  tasks: new Map(),   // "round.idx" -> task
  planBubble: null,   // the assistant bubble the current plan streams into
  stream: null,       // AbortController of the event stream
  refreshTimer: null,
};


// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function streamEvents(runId, onEvent, signal) {
  let failures = 0;
  for (;;) {
    try {
      const response = await api(`/runs/${runId}/events`, {
        signal,
        headers: { Accept: "text/event-stream", ...(state.lastSeq ? { "Last-Event-ID": String(state.lastSeq) } : {}) },
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;  // the run has ended
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          if (event.seq <= state.lastSeq) continue;
          state.lastSeq = event.seq;
          failures = 0;
          onEvent(event);
        }
      }
    } catch (error) {
      if (signal.aborted || error.message === "unauthorized" || error.status) return;
      failures += 1;
      if (failures > 8) { addMessage("assistant error", `lost the event stream: ${error.message}`); return; }
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** failures)));
    }
  }
}

// ---- token ----------------------------------------------------------------------------

$("#token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  useToken($("#token-input").value.trim());
  $("#token-input").value = "";
  await start();
});

// ---- chat -----------------------------------------------------------------------------

function addMessage(kind, text, extra) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  if (kind.startsWith("assistant")) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = "perfsmith";
    li.append(who);
  }
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  li.append(body);
  if (extra) li.append(extra);
  $("#messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function planBubble(round) {
  const pre = document.createElement("pre");
  pre.className = "plan-text";
  const li = addMessage("assistant plan", `Round ${round}: planning…`, pre);
  li.dataset.round = round;
  return li;
}

function onEvent(ev) {
  const p = ev.payload || {};
  switch (ev.type) {
    case "run_started":
      break;
    case "user_message":
      addMessage("user", p.text);
      break;
    case "plan_started":
      state.planBubble = planBubble(p.round);
      break;
    case "task_parsed": {
      if (state.planBubble) state.planBubble.querySelector(".plan-text").textContent += `${p.line}\n`;
      if (p.duplicate_of != null) {
        // the same call again runs once: one box, with how many times it was asked for
        const first = state.tasks.get(`${p.round}.${p.duplicate_of}`);
        if (first) { first.repeats = (first.repeats || 1) + 1; drawDag(); }
        break;
      }
      state.tasks.set(`${p.round}.${p.idx}`, { round: p.round, idx: p.idx, tool: p.tool, deps: p.deps || [], status: "waiting", start: null, run_s: null });
      drawDag();
      break;
    }
    case "plan_short":
      addMessage("assistant", `Round ${p.round}: the plan fell short, planning again: ${p.reason}`);
      break;
    case "plan_default":
      addMessage("assistant", `Round ${p.round}: ${p.reason}.`);
      break;
    case "plan_line_error":
      if (state.planBubble) state.planBubble.querySelector(".plan-text").textContent += `✗ ${p.line}  (${p.error})\n`;
      break;
    case "task_started": {
      const t = state.tasks.get(`${p.round}.${p.idx}`);
      if (t) { t.status = "running"; t.start = Date.parse(ev.time); drawDag(); }
      break;
    }
    case "task_finished": {
      const t = state.tasks.get(`${p.round}.${p.idx}`);
      if (t) { t.status = p.status; t.run_s = p.run_s; drawDag(); }
      if (["verify", "propose", "tune"].includes(p.tool)) scheduleRefresh();
      break;
    }
    case "plan_finished":
      if (state.planBubble) state.planBubble.querySelector(".body").textContent = `Round ${p.round}: a plan of ${p.tasks} task(s), running as it streamed in.`;
      break;
    case "join": {
      const what = p.action === "finish" ? "finish" : "plan again";
      addMessage("assistant", `${p.thought ? p.thought + "\n" : ""}→ ${what}${p.action === "replan" && p.text ? ": " + p.text : ""}`);
      break;
    }
    case "run_resumed":
      addMessage("assistant", "Resuming: finished tasks are reused.");
      break;
    case "run_finished": {
      const li = addMessage(p.status === "done" ? "assistant answer" : "assistant error",
        p.status === "done" ? (p.answer || "done") : `${p.status}: ${p.error || ""}`);
      li.dataset.status = p.status;
      scheduleRefresh(0);
      break;
    }
    default:
      break;
  }
}

async function send(text) {
  if (!text.trim()) return;
  $("#prompt").value = "";
  try {
    if (state.run && TERMINAL.has(state.run.status)) {
      addMessage("user", text);
      await api(`/runs/${state.run.id}/messages`, { method: "POST", json: { text } });
      state.run.status = "running";
      // the user's message arrives as an event too: skip its echo
      state.skipEcho = text;
      follow();
    } else {
      // the message and a pending run show at once; the run fills in when the server answers
      resetView();
      state.run = null;
      $("#run-title").textContent = text;
      addMessage("user", text);
      addMessage("assistant pending", "Starting the run…");
      addPendingRun(text);
      $("#send").disabled = true;
      const run = await (await api("/runs", { method: "POST", json: { kind: "chat", message: text } })).json();
      await openRun(run.id);
    }
  } catch (error) {
    if (error.message !== "unauthorized") addMessage("assistant error", error.message);
    showStatus();
  }
  refreshRuns();
}

function addPendingRun(text) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.setAttribute("aria-current", "true");
  button.dataset.pending = "true";
  const req = document.createElement("span");
  req.className = "req";
  req.textContent = text;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = "chat · pending";
  button.append(req, meta);
  li.append(button);
  for (const other of document.querySelectorAll("#run-list button")) other.removeAttribute("aria-current");
  $("#run-list").prepend(li);
}

// ---- runs -----------------------------------------------------------------------------

async function refreshRuns() {
  if (!session.token) return;
  let page;
  try { page = await getJSON("/runs?limit=50"); } catch (_) { return; }
  setTokenState("connected");
  const list = $("#run-list");
  list.replaceChildren();
  for (const run of page.items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.dataset.runId = run.id;
    if (state.run && state.run.id === run.id) button.setAttribute("aria-current", "true");
    const req = document.createElement("span");
    req.className = "req";
    req.textContent = run.message || run.request;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${run.kind} · ${run.status} · ${new Date(run.created_at).toLocaleString()}`;
    button.append(req, meta);
    button.addEventListener("click", () => openRun(run.id));
    li.append(button);
    list.append(li);
  }
}

function resetView() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.lastSeq = 0;
  state.tasks = new Map();
  state.planBubble = null;
  $("#messages").replaceChildren();
  $("#dag").replaceChildren(emptyNote("the plan's tasks appear here as they stream in"));
  $("#dag").dataset.tasks = "0";
  $("#candidates").replaceChildren(emptyNote("no candidates yet"));
  $("#diff").replaceChildren(emptyNote("the winning change appears here"));
  $("#artifacts").replaceChildren();
}

function emptyNote(text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  return p;
}

async function openRun(runId) {
  resetView();
  let run;
  try { run = await getJSON(`/runs/${runId}`); } catch (error) {
    addMessage("assistant error", `cannot open run ${runId}: ${error.message}`);
    return;
  }
  state.run = run;
  history.replaceState(null, "", `#run=${run.id}`);
  $("#run-title").textContent = run.message || run.request;
  addMessage("user", run.message || run.request);
  showStatus();
  follow();
  refreshRuns();
}

function follow() {
  const controller = new AbortController();
  if (state.stream) state.stream.abort();
  state.stream = controller;
  showStatus();
  streamEvents(state.run.id, (ev) => {
    if (ev.type === "user_message" && state.skipEcho === ev.payload.text) { state.skipEcho = null; return; }
    onEvent(ev);
  }, controller.signal).then(async () => {
    if (controller.signal.aborted) return;
    state.run = await getJSON(`/runs/${state.run.id}`);
    showStatus();
    await refreshResults();
    refreshRuns();
  });
}

function showStatus() {
  const badge = $("#run-status");
  const status = state.run ? (state.run.status === "pending" ? "running" : state.run.status) : "";
  badge.textContent = status;
  badge.className = `badge ${status}`;
  const live = state.run && !TERMINAL.has(state.run.status);
  $("#cancel").hidden = !live;
  $("#send").textContent = state.run && !live ? "Follow up" : "Send";
  $("#send").disabled = !!live;
}

$("#cancel").addEventListener("click", async () => {
  if (!state.run) return;
  try { await api(`/runs/${state.run.id}/cancel`, { method: "POST" }); } catch (error) { addMessage("assistant error", error.message); }
});

$("#new-chat").addEventListener("click", newChat);

function newChat() {
  resetView();
  state.run = null;
  history.replaceState(null, "", "#");
  $("#run-title").textContent = "New chat";
  showStatus();
  refreshRuns();
  $("#prompt").focus();
}

// ---- results: candidates chart, diff, artifacts ---------------------------------------

function scheduleRefresh(delay = 300) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refreshResults, delay);
}

async function refreshResults() {
  if (!state.run) return;
  const runId = state.run.id;
  let candidates, artifacts;
  try {
    [candidates, artifacts] = await Promise.all([getJSON(`/runs/${runId}/candidates`), getJSON(`/runs/${runId}/artifacts`)]);
  } catch (_) { return; }
  if (!state.run || state.run.id !== runId) return;
  drawCandidates(candidates);
  drawArtifacts(runId, artifacts);
  const diffs = artifacts.filter((a) => a.kind === "diff");
  if (diffs.length) {
    const text = await (await api(`/runs/${runId}/artifacts/${diffs[diffs.length - 1].id}`)).text();
    drawDiff(text);
  } else if (candidates.some((c) => c.verdict === "faster") === false && TERMINAL.has(state.run.status)) {
    $("#diff").replaceChildren(emptyNote("no candidate was verified faster"));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawDag() {
  const tasks = [...state.tasks.values()];
  const box = $("#dag");
  box.dataset.tasks = String(tasks.length);
  if (!tasks.length) return;
  const rounds = [...new Set(tasks.map((t) => t.round))].sort((a, b) => a - b);
  const W = 150, H = 40, GX = 40, GY = 14, PAD = 22;
  const pos = new Map();
  let y0 = 0, width = 0;
  const nodes = [], edges = [], labels = [];
  for (const round of rounds) {
    const here = tasks.filter((t) => t.round === round).sort((a, b) => a.idx - b.idx);
    const depth = new Map();
    for (const t of here) depth.set(t.idx, 1 + Math.max(-1, ...t.deps.map((d) => depth.get(d) ?? -1)));
    const rows = new Map();
    for (const t of here) {
      const col = depth.get(t.idx);
      const row = rows.get(col) || 0;
      rows.set(col, row + 1);
      const x = col * (W + GX), y = y0 + PAD + row * (H + GY);
      pos.set(`${round}.${t.idx}`, { x, y });
      width = Math.max(width, x + W);
    }
    labels.push(svg("text", { x: 0, y: y0 + 14, class: "round-label" }, `round ${round}`));
    for (const t of here) {
      const { x, y } = pos.get(`${round}.${t.idx}`);
      for (const d of t.deps) {
        const from = pos.get(`${round}.${d}`);
        if (from) edges.push(svg("path", { class: "edge", d: `M${from.x + W},${from.y + H / 2} C${from.x + W + GX / 2},${from.y + H / 2} ${x - GX / 2},${y + H / 2} ${x},${y + H / 2}` }));
      }
      const g = svg("g", { class: `node ${t.status}`, "data-task": `${round}.${t.idx}`, "data-status": t.status, tabindex: "0" });
      g.append(svg("title", {}, `$${t.idx} ${t.tool}: ${t.status}`));
      g.append(svg("rect", { x, y, width: W, height: H }));
      const times = t.repeats > 1 ? ` ×${t.repeats}` : "";
      g.append(svg("text", { x: x + 8, y: y + 16 }, `$${t.idx} ${t.tool}`.slice(0, 20 - times.length) + times));
      const time = t.run_s != null ? `${t.run_s.toFixed(2)} s` : t.status;
      g.append(svg("text", { x: x + 8, y: y + 32, class: "time" }, time));
      nodes.push(g);
    }
    y0 = Math.max(...here.map((t) => pos.get(`${round}.${t.idx}`).y)) + H + GY + 8;
  }
  const root = svg("svg", { viewBox: `-2 0 ${Math.max(width, 300) + 6} ${y0}`, role: "img", "aria-label": "plan DAG" });
  root.append(...labels, ...edges, ...nodes);
  box.replaceChildren(root);
}

function drawCandidates(candidates) {
  const box = $("#candidates");
  if (!candidates.length) { box.replaceChildren(emptyNote("no candidates yet")); return; }
  const rowH = 26, left = 210, right = 70, W = 560;
  const values = candidates.flatMap((c) => [c.speedup, c.ci_low, c.ci_high]).filter((v) => v && v > 0);
  const lo = Math.min(0.5, ...values) * 0.9, hi = Math.max(2, ...values) * 1.1;
  const sx = (v) => left + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * (W - left - right);
  const H = rowH * candidates.length + 24;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "speedups with 95% intervals" });
  root.append(svg("line", { class: "one", x1: sx(1), x2: sx(1), y1: 0, y2: H - 18 }));
  root.append(svg("text", { x: sx(1) - 8, y: H - 4 }, "1x"));
  candidates.forEach((c, i) => {
    const y = i * rowH + 14;
    const g = svg("g", { class: `cand ${c.verdict || "pending"}`, "data-verdict": c.verdict || "pending" });
    const label = `#${c.id} ${c.origin}`;
    g.append(svg("text", { x: 0, y: y + 4 }, label.length > 17 ? `${label.slice(0, 16)}…` : label));
    g.lastChild.append(svg("title", {}, label));
    if (c.speedup) {
      if (c.ci_low && c.ci_high) g.append(svg("line", { class: c.verdict, x1: sx(c.ci_low), x2: sx(c.ci_high), y1: y, y2: y, "stroke-width": 2 }));
      g.append(svg("circle", { class: c.verdict, cx: sx(c.speedup), cy: y, r: 4.5 }));
      g.append(svg("text", { x: W - right + 6, y: y + 4 }, `${c.speedup.toFixed(2)}x`));
    } else {
      g.append(svg("text", { class: "verdict", x: left, y: y + 4 }, c.verdict || "verifying…"));
    }
    if (c.speedup) g.append(svg("text", { class: "verdict", x: 138, y: y + 4 }, c.verdict));
    root.append(g);
  });
  box.replaceChildren(root);
}

function drawArtifacts(runId, artifacts) {
  const box = $("#artifacts");
  box.replaceChildren();
  const latest = new Map();  // a follow-up writes a new diff and report: show the newest
  for (const a of artifacts) latest.set(`${a.kind}:${a.name}`, a);
  for (const a of latest.values()) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${a.name} (${a.kind})`;
    b.dataset.kind = a.kind;
    b.addEventListener("click", async () => {
      const blob = await (await api(`/runs/${runId}/artifacts/${a.id}`)).blob();
      const url = URL.createObjectURL(new Blob([blob], { type: a.media_type }));
      window.open(url, "_blank", "noopener");
    });
    box.append(b);
  }
}

const PY = /(#.*$)|("""|'''|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|\b(def|return|for|in|if|elif|else|while|import|from|as|not|and|or|is|None|True|False|class|with|yield|lambda|try|except|raise|pass|break|continue)\b|\b(\d+(?:\.\d+)?)\b|\b([A-Za-z_]\w*)(?=\()/g;

function highlight(code, into) {
  let last = 0;
  for (const m of code.matchAll(PY)) {
    if (m.index > last) into.append(document.createTextNode(code.slice(last, m.index)));
    const span = document.createElement("span");
    span.className = m[1] ? "com" : m[2] ? "str" : m[3] ? "kw" : m[4] ? "num" : "fn";
    span.textContent = m[0];
    into.append(span);
    last = m.index + m[0].length;
  }
  if (last < code.length) into.append(document.createTextNode(code.slice(last)));
}

function drawDiff(text) {
  const pre = $("#diff");
  pre.replaceChildren();
  for (const line of text.split("\n")) {
    const span = document.createElement("span");
    if (line.startsWith("+++") || line.startsWith("---")) span.className = "file";
    else if (line.startsWith("@@")) span.className = "hunk";
    else if (line.startsWith("+")) span.className = "add";
    else if (line.startsWith("-")) span.className = "del";
    if (span.className === "file" || span.className === "hunk") span.textContent = line;
    else { span.append(line.slice(0, 1)); highlight(line.slice(1), span); }
    pre.append(span);
    if (!span.className) pre.append("\n");
  }
  pre.dataset.ready = "true";
}

// ---- keyboard and start ---------------------------------------------------------------

$("#composer").addEventListener("submit", (e) => { e.preventDefault(); if (!$("#send").disabled) send($("#prompt").value); });
$("#prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("#composer").requestSubmit(); }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement.tagName !== "TEXTAREA" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); $("#prompt").focus(); }
  if (e.altKey && (e.key === "n" || e.key === "N")) { e.preventDefault(); newChat(); }
  if (e.key === "Escape" && document.activeElement === $("#prompt")) $("#prompt").blur();
});
$("#problems").addEventListener("change", (e) => {
  if (e.target.value) $("#prompt").value = `write a faster ${e.target.value} kernel in C++`;
  e.target.value = "";
  $("#prompt").focus();
});

async function loadProblems() {
  try {
    const names = await getJSON("/kernel-problems");
    const select = $("#problems");
    select.replaceChildren(select.firstElementChild);
    for (const name of names) {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = name;
      select.append(o);
    }
  } catch (_) { /* no suite: the picker stays empty */ }
}

async function start() {
  if (!session.token) { setTokenState("paste an API token (perfsmith tokens create NAME)"); $("#token-input").focus(); return; }
  await refreshRuns();
  loadProblems();
  const match = location.hash.match(/run=([0-9a-f]{32})/);
  if (match) await openRun(match[1]); else newChat();
}

start();
