// perfsmith's batch page: plain JavaScript, no build step. Lists the tenant's batches with
// their progress, shows one batch's jobs (polled while it runs) and its morning report.
"use strict";

const ENDED_JOB = new Set(["done", "failed", "cancelled", "skipped"]);
const state = { open: null, timer: null };

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function speed(summary) {
  if (!summary || summary.speedup == null) return "none verified";
  const ci = summary.ci || [];
  const s = `${summary.speedup.toFixed(2)}x`;
  return ci[0] == null ? s : `${s} [${ci[0].toFixed(2)}, ${ci[1].toFixed(2)}]`;
}

function ended(batch) {
  return batch.jobs.filter((j) => ENDED_JOB.has(j.status)).length;
}

async function loadList() {
  if (!session.token) return;
  const batches = await getJSON("/batches?limit=50");
  const list = $("#batch-list");
  list.replaceChildren();
  for (const b of batches) {
    const button = el("button", { type: "button", "data-batch": b.id });
    button.append(el("span", { class: "req" }, b.name));
    button.append(el("span", { class: "meta" }, `${b.status} · ${ended(b)}/${b.jobs.length} jobs`));
    if (state.open === b.id) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => openBatch(b.id));
    const item = el("li");
    item.append(button);
    list.append(item);
  }
}

function drawBatch(batch) {
  $("#batch-title").textContent = `${batch.name} (${batch.id.slice(0, 8)})`;
  const badge = $("#batch-status");
  badge.textContent = batch.status;
  badge.className = `badge ${batch.status === "ended" ? "done" : batch.status === "cancelled" ? "cancelled" : "running"}`;
  const total = batch.jobs.length;
  const done = ended(batch);
  $("#batch-bar").style.width = `${total ? (100 * done) / total : 0}%`;
  $("#batch-bar").dataset.ended = String(done);
  const counts = {};
  for (const j of batch.jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  $("#batch-counts").textContent = `${done} of ${total} jobs ended · ` +
    Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
  const body = $("#jobs tbody");
  body.replaceChildren();
  for (const j of batch.jobs) {
    const row = el("tr", { "data-status": j.status });
    row.append(el("td", {}, j.name), el("td", {}, j.kind), el("td", { class: j.status }, j.status),
      el("td", {}, speed(j.summary)), el("td", {}, String(j.attempts)),
      el("td", {}, `${Math.round(j.elapsed_s)} s`), el("td", {}, j.error || ""));
    body.append(row);
  }
  $("#batch-cancel").hidden = batch.status !== "active";
  $("#batch-resume").hidden = batch.status === "active";
}

async function showReport(batchId) {
  const html = await (await api(`/batches/${batchId}/report?format=html`)).text();
  $("#report").srcdoc = html;  // a sandboxed frame: no script of the report's runs
}

async function openBatch(batchId) {
  state.open = batchId;
  clearTimeout(state.timer);
  const batch = await getJSON(`/batches/${batchId}`);
  drawBatch(batch);
  await showReport(batchId);
  await loadList();
  if (batch.status === "active") state.timer = setTimeout(() => openBatch(batchId), 2000);
}

$("#token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  useToken($("#token-input").value.trim());
  try { await loadList(); setTokenState("connected"); } catch (error) { setTokenState(error.message, true); }
});

$("#submit-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errors = $("#submit-errors");
  errors.replaceChildren();
  try {
    const batch = await (await api("/batches", { method: "POST", json: { toml: $("#batch-toml").value } })).json();
    $("#batch-toml").value = "";
    await openBatch(batch.id);
  } catch (error) {
    const problems = error.errors && error.errors.length ? error.errors.map((x) => x.message) : [error.message];
    for (const p of problems) errors.append(el("li", {}, p));
  }
});

$("#batch-cancel").addEventListener("click", async () => {
  await api(`/batches/${state.open}/cancel`, { method: "POST" });
  await openBatch(state.open);
});

$("#batch-resume").addEventListener("click", async () => {
  await api(`/batches/${state.open}/resume`, { method: "POST", json: {} });
  await openBatch(state.open);
});

if (session.token) {
  $("#token-input").value = session.token;
  loadList().then(() => setTokenState("connected")).catch((error) => setTokenState(error.message, true));
}
const wanted = new URLSearchParams(location.search).get("batch");
if (wanted && session.token) openBatch(wanted).catch((error) => setTokenState(error.message, true));
