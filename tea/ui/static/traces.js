/* /ui/traces — trace summaries (GET /v1/traces): service, root span, start, duration, spans, errors. */
"use strict";

(() => {
  const { h, api, fmt } = TEA;
  const params = new URLSearchParams(location.search);

  function form() {
    return h("form", { id: "trace-filters", onsubmit: (e) => { e.preventDefault(); TEA.refresh(); } },
      h("div", { class: "filters" },
        h("label", {}, "service", h("input", { id: "f-service", value: params.get("service") || "" })),
        h("label", {}, "status", h("select", { id: "f-status" }, h("option", { value: "" }, "any"),
          h("option", { value: "error" }, "with errors"), h("option", { value: "ok" }, "without errors"))),
        h("label", {}, "min duration (ms)", h("input", { id: "f-min", type: "number", min: 0, step: "any", value: params.get("min_duration_ms") || "" }))),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply filters")));
  }

  TEA.page(async (r) => {
    if (!document.getElementById("trace-filters")) {
      TEA.content().append(TEA.panel(null, "span-12", form()), h("div", { class: "grid" }, h("section", { class: "panel span-12", id: "list", "aria-label": "Traces" })));
    }
    const data = await api("/v1/traces", {
      start_time: r.startIso, end_time: r.endIso, limit: 100, service: document.getElementById("f-service").value.trim(),
      status: document.getElementById("f-status").value, min_duration_ms: document.getElementById("f-min").value,
    });
    const tenantQuery = TEA.state.tenant ? "?tenant=" + encodeURIComponent(TEA.state.tenant) : "";
    TEA.clear(document.getElementById("list")).append(h("h2", {}, `Traces (${data.traces.length}, newest first)`), TEA.table([
      { key: "start_time", label: "Start", render: (t) => fmt.time(t.start_time) },
      { key: "root_span", label: "Root span", render: (t) => h("a", { href: "/ui/traces/" + t.trace_id + tenantQuery }, t.root_span || t.trace_id) },
      { key: "service", label: "Service" },
      { key: "duration_ms", label: "Duration", num: true, render: (t) => fmt.ms(t.duration_ms) },
      { key: "span_count", label: "Spans", num: true, render: (t) => fmt.num(t.span_count) },
      { key: "error_count", label: "Errors", num: true, render: (t) => t.error_count ? TEA.badge(String(t.error_count), "bad") : "0" },
      { key: "services", label: "Services", cls: "hide-narrow", render: (t) => t.services.join(", ") },
    ], data.traces, { label: "Traces", empty: "No traces in this range (spans arrive through OTLP: POST /v1/traces or gRPC)." }));
  });
})();
