// What perfsmith's pages share: the API token, calls to the server's API, the token's
// state line. Plain JavaScript, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);

// Every page's header (filled in here, before the page's own script runs): perfsmith, the
// page's tagline, a link to the other page, and the API token's form and state line.
(function fillHeader() {
  const header = $("header");
  header.innerHTML = `<h1>perfsmith</h1> <span class="tagline"></span> <a class="navlink"></a>
    <form id="token-form" class="token" autocomplete="off">
      <label for="token-input">API token</label>
      <input id="token-input" type="password" placeholder="psk_…" spellcheck="false">
      <button type="submit">Use</button>
      <span id="token-state" role="status"></span>
    </form>`;
  header.querySelector(".tagline").textContent = header.dataset.tagline;
  const link = header.querySelector(".navlink");
  link.href = header.dataset.link;
  link.textContent = header.dataset.label;
})();
const session = { token: localStorage.getItem("perfsmith.token") || "" };

function useToken(token) {
  session.token = token;
  localStorage.setItem("perfsmith.token", token);
}

function setTokenState(text, bad = false) {
  const line = $("#token-state");
  line.textContent = text;
  line.style.color = bad ? "var(--failed)" : "var(--dim)";
}

// A problem answer (RFC 9457) becomes an Error with its detail, status and field errors.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    setTokenState("token refused: paste a valid one", true);
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    const error = new Error(body.detail || response.statusText);
    error.status = response.status;
    error.errors = body.errors || [];
    throw error;
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();
