/* /ui — requests, errors, error rate and latency percentiles over time (GET /v1/metrics), the top
   methods and sources, tokens and cost, and the ingestion health (GET /health). */
"use strict";

(() => {
  const { h, api, panel, table, kpi, fmt } = TEA;
  const SERIES = "requests,errors,error_rate,p50_latency_ms,p95_latency_ms,p99_latency_ms,tokens,cost";

  function coarse(r) {  // one or two buckets over the range: the top lists add up their points
    const span = r.end - r.start;
    return span <= 86400e3 ? "day" : span <= 7 * 86400e3 ? "week" : "month";
  }
  const sum = (points, key) => points.reduce((a, p) => a + (p[key] || 0), 0);

  function topTable(data, key, label) {
    const rows = data.series.map((s) => ({
      name: s.group[key], requests: sum(s.points, "requests"), errors: sum(s.points, "errors"),
    }));
    return table([
      { key: "name", label, render: (r) => r.name === null ? h("span", { class: "muted" }, "(none)") : r.name },
      { key: "requests", label: "Requests", num: true, render: (r) => fmt.num(r.requests) },
      { key: "errors", label: "Errors", num: true, render: (r) => fmt.num(r.errors) },
      { key: "rate", label: "Error rate", num: true, render: (r) => fmt.pct(r.requests ? r.errors / r.requests : null) },
    ], rows, { label: `Top ${label.toLowerCase()}s` });
  }

  function healthFacts(health) {
    const used = health.buffer_max_bytes ? health.buffer_bytes / health.buffer_max_bytes : 0;
    return TEA.facts([
      ["Status", TEA.statusBadge(health.status)],
      ["Storage", h("span", {}, TEA.statusBadge(health.storage), " ", health.storage_backend)],
      ["Ready", TEA.badge(health.ready ? "ready" : "not ready", health.ready ? "ok" : "bad")],
      ["Durable buffer", `${fmt.bytes(health.buffer_bytes)} of ${fmt.bytes(health.buffer_max_bytes)} (${(used * 100).toFixed(1)} %), ${health.buffer_segments} segment(s)`],
      ["Writer lag", `${health.writer_lag_seconds.toFixed(2)} s`],
      ["Events stored", fmt.num(health.events_stored)],
      ["Last storage error", health.last_storage_error || "none"],
    ]);
  }

  TEA.page(async (r) => {
    const window_ = { start_time: r.startIso, end_time: r.endIso };
    const top = (by) => api("/v1/metrics", { ...window_, group_by: by, metrics: "requests,errors", granularity: coarse(r), limit: 10 });
    const [main, methods, sources, health] = await Promise.all([
      api("/v1/metrics", { ...window_, metrics: SERIES, granularity: "auto" }),
      top("method"), top("source"), api("/health", {}, { tenant: false }),
    ]);
    const points = main.series.length ? main.series[0].points : [];
    const requests = sum(points, "requests"), errors = sum(points, "errors");
    const times = points.map((p) => new Date(p.timestamp));
    const col = (key) => points.map((p) => (p.requests ? p[key] : null));

    const root = TEA.content();
    root.dataset.granularity = main.granularity;
    root.append(h("div", { class: "kpis", id: "totals" },
      kpi("Requests", fmt.num(requests), `${main.granularity} buckets`, "kpi-requests"),
      kpi("Errors", fmt.num(errors), null, "kpi-errors"),
      kpi("Error rate", fmt.pct(requests ? errors / requests : null), null, "kpi-error-rate"),
      kpi("Tokens", fmt.num(sum(points, "tokens")), null, "kpi-tokens"),
      kpi("Cost", fmt.cost(sum(points, "cost")), null, "kpi-cost")));
    for (const [id, value] of [["kpi-requests", requests], ["kpi-errors", errors]]) {
      root.querySelector(`#${id} .value`).dataset.value = String(value);
    }

    const grid = h("div", { class: "grid" });
    root.append(grid);
    const chart = (title, cls) => { const box = h("div"); grid.append(panel(title, cls, box)); return box; };
    const countFmt = (v) => fmt.num(Math.round(v));
    Charts.bars(chart("Requests and errors", "span-6"), {
      label: "Requests and errors per bucket", times, yFormat: countFmt,
      series: [{ name: "Requests", values: points.map((p) => p.requests) }, { name: "Errors", values: points.map((p) => p.errors) }],
    });
    Charts.line(chart("Error rate", "span-6"), {
      label: "Error rate per bucket", times, yFormat: (v) => +(v * 100).toFixed(2) + " %",
      series: [{ name: "Error rate", values: col("error_rate") }],
    });
    Charts.line(chart("Latency percentiles", "span-12"), {
      label: "Latency p50, p95 and p99 per bucket", times, yFormat: (v) => fmt.ms(v),
      series: [{ name: "p50", values: col("p50_latency_ms") }, { name: "p95", values: col("p95_latency_ms") },
        { name: "p99", values: col("p99_latency_ms") }],
    });
    grid.append(panel("Top methods and tools", "span-6", topTable(methods, "method", "Method")));
    grid.append(panel("Top sources", "span-6", topTable(sources, "source", "Source")));
    grid.append(panel("Ingestion health", "span-12", healthFacts(health)));
  });
})();
