// What perfsmith's pages share: the API token, calls to the server's API, the token's
// state line. Plain JavaScript, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
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
