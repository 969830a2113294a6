/* /ui/events — every GET /v1/events filter, the events table with cursor paging, one event's full
   detail (GET /v1/events/{id}), and Live: new matching events from GET /v1/events/stream. */
"use strict";

(() => {
  const { h, api, fmt } = TEA;
  const FIELDS = ["event_type", "source", "method", "target", "status", "protocol", "user_id", "trace_id", "correlation_id"];
  const MAX_ROWS = 1000;
  const params = new URLSearchParams(location.search);
  let live = null, cursor = null, rows = [], tbody = null, lastRange = null;

  const columns = () => [
    { key: "timestamp", label: "Time", render: (e) => h("time", { datetime: e.timestamp }, fmt.time(e.timestamp)) },
    ...(TEA.isAdmin && !TEA.state.tenant ? [{ key: "tenant_id", label: "Tenant" }] : []),
    { key: "event_type", label: "Type" },
    { key: "source", label: "Source" },
    { key: "method", label: "Method" },
    { key: "target", label: "Target", cls: "hide-narrow" },
    { key: "status", label: "Status", render: (e) => TEA.statusBadge(e.status) },
    { key: "duration_ms", label: "Duration", num: true, render: (e) => (e.duration_ms === null ? null : fmt.ms(e.duration_ms)) },
    { key: "user_id", label: "User", cls: "hide-narrow" },
  ];

  function filters() {
    const out = {};
    for (const name of FIELDS) {
      const value = document.getElementById("f-" + name).value.trim();
      if (value) out[name] = value;
    }
    return out;
  }

  function form() {
    const inputs = FIELDS.map((name) => h("label", {}, name.replace("_", " "),
      h("input", { id: "f-" + name, name, value: params.get(name) || "", autocomplete: "off" })));
    const liveButton = h("button", { type: "button", id: "live", class: "secondary", "aria-pressed": "false", onclick: toggleLive }, "Live");
    return h("form", { id: "filters", onsubmit: (e) => { e.preventDefault(); stopLive(); TEA.refresh(); } },
      h("div", { class: "filters" }, inputs),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply filters"), liveButton,
        h("span", { id: "live-state", class: "live-state", "aria-live": "polite" }, "Live off"),
        h("span", { id: "count", class: "muted" })));
  }

  function render(detailBox) {
    const wrap = h("div", { class: "scroll" });
    const cols = columns();
    tbody = h("tbody", {});
    for (const e of rows) tbody.append(row(cols, e, detailBox));
    wrap.append(h("table", { id: "events-table", "aria-label": "Events" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { class: c.num ? "num" : c.cls, scope: "col" }, c.label)))), tbody));
    return wrap;
  }
  function row(cols, e, detailBox) {
    const tr = TEA.tableRow(cols, e, { onRow: (ev, el) => detail(ev, el, detailBox) });
    tr.dataset.eventId = e.event_id;
    return tr;
  }

  async function detail(e, tr, box) {
    for (const el of document.querySelectorAll("#events-table tr.selected")) el.classList.remove("selected");
    tr.classList.add("selected");
    TEA.clear(box).append(h("p", { class: "muted" }, "Loading…"));
    const full = await api("/v1/events/" + encodeURIComponent(e.event_id), { tenant_id: e.tenant_id });
    TEA.clear(box).append(h("h2", {}, "Event ", h("code", {}, full.event_id)),
      TEA.facts([["Tenant", full.tenant_id], ["Time", fmt.time(full.timestamp)], ["Received", fmt.time(full.received_at)],
        ["Protocol", full.source_protocol], ["Trace", full.trace_id ? h("a", { href: "/ui/traces/" + full.trace_id }, full.trace_id) : null]]),
      TEA.json(full));
    box.scrollIntoView({ block: "nearest" });
  }

  async function more(box, detailBox) {
    if (!cursor) return;
    const page = await api("/v1/events", { ...filters(), ...lastRange, limit: 50, cursor });
    cursor = page.next_cursor;
    const cols = columns();
    for (const e of page.events) { rows.push(e); tbody.append(row(cols, e, detailBox)); }
    document.getElementById("more").hidden = !page.has_more;
  }

  function toggleLive() { if (live) stopLive(); else startLive(); }
  function startLive() {
    const q = new URLSearchParams({ ...filters(), ...(TEA.state.tenant ? { tenant_id: TEA.state.tenant } : {}) });
    live = new EventSource("/v1/events/stream" + (q.toString() ? "?" + q : ""));
    const button = document.getElementById("live"), state = document.getElementById("live-state");
    button.setAttribute("aria-pressed", "true");
    state.textContent = "Live: connecting…";
    live.onopen = () => { state.textContent = "Live on"; state.classList.add("on"); document.body.dataset.live = "on"; };
    live.onmessage = (m) => prepend(JSON.parse(m.data));
    live.addEventListener("gap", (m) => TEA.note("Live tail resumed, but some events may be missing: " + JSON.parse(m.data).reason));
    live.addEventListener("dropped", () => TEA.note("The live tail fell behind and restarted from now; refresh to see what it skipped."));
    live.onerror = () => { state.textContent = "Live: reconnecting…"; state.classList.remove("on"); };
  }
  function stopLive() {
    if (!live) return;
    live.close();
    live = null;
    document.body.dataset.live = "off";
    const button = document.getElementById("live"), state = document.getElementById("live-state");
    if (button) button.setAttribute("aria-pressed", "false");
    if (state) { state.textContent = "Live off"; state.classList.remove("on"); }
  }
  function prepend(e) {
    if (!tbody) return;
    const tr = row(columns(), e, document.getElementById("detail"));
    tr.classList.add("new");
    const empty = document.getElementById("no-events");
    if (empty) empty.remove();
    tbody.prepend(tr);
    rows.unshift(e);
    while (rows.length > MAX_ROWS) { rows.pop(); tbody.lastChild.remove(); }
    document.getElementById("count").textContent = `${fmt.num(rows.length)} shown`;
  }

  window.addEventListener("pagehide", stopLive);

  TEA.page(async (r) => {
    const wasLive = Boolean(live);
    stopLive();
    if (!document.getElementById("filters")) {
      const root = TEA.content();
      root.append(TEA.panel(null, "span-12", form()),
        h("div", { class: "grid" }, h("section", { class: "panel span-8", "aria-label": "Events" }, h("div", { id: "table" }),
          h("div", { class: "actions" }, h("button", { type: "button", id: "more", class: "secondary", hidden: true }, "Load more"))),
        h("section", { class: "panel span-4", id: "detail", "aria-label": "Event detail" }, h("p", { class: "muted" }, "Select an event to see all of it."))));
      document.getElementById("more").addEventListener("click", () => more(null, document.getElementById("detail")).catch(TEA.showError));
    }
    lastRange = { start_time: r.startIso, end_time: r.endIso };
    const page = await api("/v1/events", { ...filters(), ...lastRange, limit: 50 });
    rows = page.events;
    cursor = page.next_cursor;
    const box = TEA.clear(document.getElementById("table"));
    box.append(render(document.getElementById("detail")));
    if (!rows.length) box.append(h("p", { class: "empty", id: "no-events" }, "No events match in this range."));
    document.getElementById("more").hidden = !page.has_more;
    document.getElementById("count").textContent = `${fmt.num(page.total_count)} matching in range`;
    if (wasLive || params.get("live") === "on") { params.delete("live"); startLive(); }
  });
})();
