/* The Control Center's shared code: the toolbar (range, tenant, refresh), TEA's JSON API with the
   session cookie (and the CSRF token on writes), DOM building, formatting and tables.
   Every value is put into the page as text (textContent), never as HTML. */
"use strict";

const TEA = (() => {
  const body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const isAdmin = body.dataset.admin === "true";
  const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
  const params = new URLSearchParams(location.search);
  const state = {
    range: (RANGES[params.get("range")] || params.get("range") === "custom") ? params.get("range") : "24h",
    start: params.get("start") || "",
    end: params.get("end") || "",
    tenant: isAdmin ? (params.get("tenant") || "") : "",
  };
  let loader = null;
  let loading = 0;

  class ApiError extends Error {
    constructor(message, status, body) { super(message); this.status = status; this.body = body; }
  }

  // ------------------------------------------------------------------ DOM
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  const $ = (sel) => document.querySelector(sel);

  // ------------------------------------------------------------------ formatting
  const nf = new Intl.NumberFormat("en-US");
  const num = (v) => (v === null || v === undefined ? "–" : nf.format(v));
  const ms = (v) => v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s"
    : v >= 100 ? Math.round(v) + " ms" : v >= 10 ? v.toFixed(1) + " ms" : v.toFixed(2) + " ms";
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(2) + " %");
  const cost = (v) => (v === null || v === undefined ? "–" : "$" + (v >= 100 ? v.toFixed(0) : v >= 0.01 || v === 0 ? v.toFixed(2) : v.toFixed(4)));
  const mb = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " GB" : v.toFixed(2) + " MB");
  const bytes = (v) => v >= 1 << 30 ? (v / (1 << 30)).toFixed(2) + " GiB" : v >= 1 << 20 ? (v / (1 << 20)).toFixed(1) + " MiB"
    : v >= 1024 ? (v / 1024).toFixed(1) + " KiB" : v + " B";
  const pad = (n) => String(n).padStart(2, "0");
  function time(value, withDate = true) {
    if (!value) return "–";
    const d = value instanceof Date ? value : new Date(value);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
  }
  const localInput = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

  function badge(text, kind, title) { return h("span", { class: `badge ${kind || ""}`, title }, text); }
  const KINDS = {
    ok: ["ok", "success", "healthy", "active", "resolved", "ready", "running"],
    bad: ["error", "timeout", "unhealthy", "firing", "critical", "failed", "unreachable", "cancelled"],
    warn: ["degraded", "pending", "warning", "inactive", "stale", "maintenance"],
  };
  function statusBadge(status) {
    if (!status) return h("span", { class: "muted" }, "–");
    const kind = Object.keys(KINDS).find((k) => KINDS[k].includes(status)) || "neutral";
    return badge(status, kind);
  }

  // ------------------------------------------------------------------ the API
  function query(values) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(values || {})) {
      if (v !== undefined && v !== null && v !== "") q.set(k, v);
    }
    return q;
  }
  async function request(method, path, values, payload) {
    const q = query(values);
    const headers = { accept: "application/json" };
    if (method !== "GET") { headers["x-csrf-token"] = csrf; }
    if (payload !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path + (q.toString() ? "?" + q : ""), {
      method, headers, credentials: "same-origin", body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    if (res.status === 401) {
      location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError("signed out", 401, null);
    }
    const text = await res.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: keep the text */ }
    if (!res.ok) throw new ApiError((data && data.message) || `${res.status} ${res.statusText}`, res.status, data);
    return data;
  }
  /** GET a TEA API path; the chosen tenant is added as tenant_id unless values name one (or tenant: false). */
  function api(path, values = {}, opts = {}) {
    const v = { ...values };
    if (opts.tenant !== false && state.tenant && !("tenant_id" in v)) v.tenant_id = state.tenant;
    return request("GET", path, v);
  }
  function post(path, payload, values = {}) {
    const v = { ...values };
    if (state.tenant && !("tenant_id" in v)) v.tenant_id = state.tenant;
    return request("POST", path, v, payload === undefined ? {} : payload);
  }
  function apiUrl(path, values = {}) {
    const v = { ...values };
    if (state.tenant && !("tenant_id" in v)) v.tenant_id = state.tenant;
    const q = query(v);
    return path + (q.toString() ? "?" + q : "");
  }

  // ------------------------------------------------------------------ range and toolbar
  function range() {
    if (state.range === "custom" && state.start && state.end) {
      return { start: new Date(state.start), end: new Date(state.end) };
    }
    const end = new Date();
    return { start: new Date(end.getTime() - RANGES[state.range]), end };
  }
  function syncUrl() {
    const q = new URLSearchParams(location.search);
    for (const key of ["range", "start", "end", "tenant"]) q.delete(key);
    if (state.range !== "24h") q.set("range", state.range);
    if (state.range === "custom") { q.set("start", state.start); q.set("end", state.end); }
    if (state.tenant) q.set("tenant", state.tenant);
    const search = q.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }
  function setupToolbar() {
    const form = $("#toolbar");
    if (!form) return;
    const select = $("#range"), custom = $("#custom"), start = $("#start"), end = $("#end"), tenant = $("#tenant");
    select.value = state.range;
    custom.hidden = state.range !== "custom";
    const r = range();
    start.value = state.start || localInput(r.start);
    end.value = state.end || localInput(r.end);
    if (isAdmin) {
      $("#tenant-pick").hidden = false;
      tenant.value = state.tenant;
      tenant.addEventListener("focus", loadTenants, { once: true });
    }
    select.addEventListener("change", () => {
      custom.hidden = select.value !== "custom";
      if (select.value !== "custom") { state.range = select.value; refresh(); }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.range = select.value;
      if (state.range === "custom") { state.start = start.value; state.end = end.value; }
      if (isAdmin) state.tenant = tenant.value.trim();
      refresh();
    });
    const menu = $("#menu");
    if (menu) {
      menu.addEventListener("click", () => {
        const nav = $("#nav");
        const open = !nav.classList.contains("open");
        nav.classList.toggle("open", open);
        menu.setAttribute("aria-expanded", String(open));
      });
    }
  }
  async function loadTenants() {
    const r = range();
    try {
      const data = await api("/v1/metrics", {
        group_by: "tenant_id", metrics: "requests", granularity: "month", limit: 200,
        start_time: r.start.toISOString(), end_time: r.end.toISOString(),
      }, { tenant: false });
      const list = clear($("#tenants"));
      for (const s of data.series) if (s.group.tenant_id) list.append(h("option", { value: s.group.tenant_id }));
    } catch (e) { /* the list is a convenience: typing a tenant works without it */ }
  }

  function showError(error) {
    const box = $("#status");
    clear(box);
    if (error) box.append(h("p", { class: "error" }, error.message || String(error)));
  }
  function note(text) {
    const box = $("#status");
    clear(box);
    if (text) box.append(h("p", { class: "note" }, text));
  }

  /** Run the page's loader now and on every refresh; it gets {start, end, tenant}. */
  async function refresh() {
    if (!loader) return;
    syncUrl();
    const r = range();
    body.dataset.start = r.start.toISOString();
    body.dataset.end = r.end.toISOString();
    body.dataset.loaded = "false";
    const mine = ++loading;
    showError(null);
    try {
      await loader({ start: r.start, end: r.end, startIso: r.start.toISOString(), endIso: r.end.toISOString(), tenant: state.tenant });
      if (mine === loading) $("#updated").textContent = "Updated " + time(new Date(), false);
    } catch (e) {
      if (e.status !== 401) showError(e);
    } finally {
      if (mine === loading) body.dataset.loaded = "true";
    }
  }
  function page(fn) { loader = fn; refresh(); }

  // ------------------------------------------------------------------ blocks
  function panel(title, cls, ...children) {
    return h("section", { class: `panel ${cls || "span-12"}`, "aria-label": title }, title ? h("h2", {}, title) : null, children);
  }
  /** A table: columns [{key, label, num, render(row)}]; rows of objects; onRow(row, tr) makes rows clickable. */
  function table(columns, rows, opts = {}) {
    if (!rows.length) return h("p", { class: "empty" }, opts.empty || "Nothing in this range.");
    const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : c.cls, scope: "col" }, c.label)));
    const tbody = h("tbody", {});
    for (const row of rows) tbody.append(tableRow(columns, row, opts));
    return h("div", { class: "scroll" }, h("table", { class: opts.cls, "aria-label": opts.label }, h("thead", {}, head), tbody));
  }
  function tableRow(columns, row, opts = {}) {
    const tr = h("tr", {}, columns.map((c) => {
      const value = c.render ? c.render(row) : row[c.key];
      return h("td", { class: c.num ? "num" : c.cls }, value === null || value === undefined || value === "" ? "–" : value);
    }));
    if (opts.onRow) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.addEventListener("click", () => opts.onRow(row, tr));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") opts.onRow(row, tr); });
    }
    return tr;
  }
  function facts(pairs) {
    return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined ? "–" : v)]));
  }
  function kpi(label, value, sub, id) {
    return h("div", { class: "kpi", id }, h("div", { class: "label" }, label), h("div", { class: "value", dataset: { value: "" } }, value),
      sub ? h("div", { class: "sub" }, sub) : null);
  }
  function json(value) { return h("pre", { class: "json" }, JSON.stringify(value, null, 2)); }
  function content() { return clear($("#content")); }

  setupToolbar();  // (scripts are deferred: the page is parsed by now)

  return {
    state, isAdmin, csrf, ApiError, h, append, clear, $, api, post, apiUrl, request, range, page, refresh, showError, note,
    panel, table, tableRow, facts, kpi, json, content, badge, statusBadge,
    fmt: { num, ms, pct, cost, mb, bytes, time },
  };
})();
