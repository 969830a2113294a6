/* /ui/agents — the seed's Control Center views over agent, MCP and workflow communications:
   the source × target matrix for the range (GET /v1/communications/matrix), top pairs (24 h),
   patterns (7 d) and the system health per protocol (5 min). */
"use strict";

(() => {
  const { h, api, fmt } = TEA;

  function matrix(rows) {
    if (!rows.length) return h("p", { class: "empty" }, "No communications in this range (POST /v1/communications, or events of type communication).");
    const sources = [...new Set(rows.map((r) => r.source_id))].sort();
    const targets = [...new Set(rows.map((r) => r.target_id))].sort();
    const cell = new Map();
    for (const r of rows) {
      const key = r.source_id + "\u0000" + r.target_id;
      const c = cell.get(key) || { calls: 0, errors: 0, total: 0, protocols: [] };
      c.calls += r.calls; c.errors += r.errors; c.total += (r.avg_ms || 0) * r.calls; c.protocols.push(r.protocol);
      cell.set(key, c);
    }
    const max = Math.max(...[...cell.values()].map((c) => c.calls));
    const head = h("tr", {}, h("th", { scope: "col" }, "source ↓ / target →"), targets.map((t) => h("th", { scope: "col", class: "num" }, t)));
    const body = sources.map((s) => h("tr", {}, h("th", { scope: "row" }, s), targets.map((t) => {
      const c = cell.get(s + "\u0000" + t);
      if (!c) return h("td", { class: "cell muted" }, "·");
      const bar = h("span", { class: "bar", "aria-hidden": "true" });
      bar.style.width = Math.max(4, (c.calls / max) * 100) + "%";
      const td = h("td", { class: "cell" + (c.errors ? " has-errors" : ""), dataset: { source: s, target: t },
        title: `${s} → ${t} (${c.protocols.join(", ")}): ${c.calls} calls, ${c.errors} errors, avg ${fmt.ms(c.total / c.calls)}` },
      `${fmt.num(c.calls)} calls`, h("br"), c.errors ? TEA.badge(`${fmt.num(c.errors)} err`, "bad") : h("span", { class: "muted" }, "0 err"),
      h("br"), h("span", { class: "muted" }, fmt.ms(c.total / c.calls)), bar);
      return td;
    })));
    return h("div", { class: "scroll" }, h("table", { class: "matrix", id: "matrix", "aria-label": "Communication matrix: calls, errors and average latency per source and target" },
      h("thead", {}, head), h("tbody", {}, body)));
  }

  TEA.page(async (r) => {
    const [m, pairs, patterns, health] = await Promise.all([
      api("/v1/communications/matrix", { start_time: r.startIso, end_time: r.endIso }),
      api("/v1/communications/top-pairs"), api("/v1/communications/patterns"), api("/v1/communications/health"),
    ]);
    const root = TEA.content();
    root.append(h("div", { class: "grid" },
      TEA.panel("Communication matrix (this range)", "span-12", matrix(m.rows)),
      TEA.panel("System health (last 5 min, per protocol)", "span-12", TEA.table([
        { key: "protocol", label: "Protocol" },
        { key: "active_sources", label: "Sources", num: true }, { key: "active_targets", label: "Targets", num: true },
        { key: "total_requests_5min", label: "Requests", num: true, render: (x) => fmt.num(x.total_requests_5min) },
        { key: "errors_5min", label: "Errors", num: true, render: (x) => fmt.num(x.errors_5min) },
        { key: "error_rate", label: "Error rate", num: true, render: (x) => x.error_rate === null ? null : x.error_rate.toFixed(2) + " %" },
        { key: "avg_duration_ms", label: "Avg latency", num: true, render: (x) => x.avg_duration_ms === null ? null : fmt.ms(x.avg_duration_ms) },
      ], health.rows, { label: "System health", empty: "No communications in the last 5 minutes." })),
      TEA.panel("Top pairs (last 24 h)", "span-6", TEA.table([
        { key: "source", label: "Source" }, { key: "target", label: "Target" }, { key: "protocol", label: "Protocol" },
        { key: "call_count", label: "Calls", num: true, render: (x) => fmt.num(x.call_count) },
        { key: "avg_duration_ms", label: "Avg", num: true, render: (x) => x.avg_duration_ms === null ? null : fmt.ms(x.avg_duration_ms) },
        { key: "total_cost", label: "Cost", num: true, render: (x) => fmt.cost(x.total_cost) },
      ], pairs.rows, { label: "Top pairs", empty: "No communications in the last 24 hours." })),
      TEA.panel("Patterns (last 7 d)", "span-6", TEA.table([
        { key: "source_id", label: "Source", render: (x) => `${x.source_id}${x.source_type ? " (" + x.source_type + ")" : ""}` },
        { key: "target_id", label: "Target", render: (x) => `${x.target_id}${x.target_type ? " (" + x.target_type + ")" : ""}` },
        { key: "protocol", label: "Protocol" },
        { key: "total_calls", label: "Calls", num: true, render: (x) => fmt.num(x.total_calls) },
        { key: "error_count", label: "Errors", num: true },
        { key: "active_days", label: "Days", num: true },
        { key: "last_communication", label: "Last", cls: "hide-narrow", render: (x) => fmt.time(x.last_communication) },
      ], patterns.rows, { label: "Patterns", empty: "No communications in the last 7 days." }))));
  });
})();
