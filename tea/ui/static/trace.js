/* /ui/traces/{trace_id} — the waterfall of a trace's spans (GET /v1/traces/{id}): each span's offset and
   duration, its attributes and span events, and the trace's OTLP log records (GET /v1/traces/{id}/logs). */
"use strict";

(() => {
  const { h, api, fmt } = TEA;
  const traceId = document.body.dataset.traceId;

  function flatten(spans, depth, out) {
    for (const s of spans) { out.push({ span: s, depth }); flatten(s.children, depth + 1, out); }
    return out;
  }
  function attributes(span) {
    const attrs = { ...(span.attributes || {}) };
    const events = attrs["span.events"] || [];
    delete attrs["span.events"];
    return { attrs, events };
  }

  function waterfall(tree, logs, detailBox) {
    const rows = flatten(tree.spans, 0, []);
    const total = tree.duration_ms || 1;
    const box = h("div", { class: "waterfall", role: "list", "aria-label": `Waterfall of ${rows.length} spans` });
    box.append(h("div", { class: "wf-scale", "aria-hidden": "true" }, h("span", {}, "Span"),
      h("span", { class: "wf-ticks" }, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", {}, fmt.ms(total * f))))));
    for (const { span, depth } of rows) {
      const left = (span.offset_ms / total) * 100, width = ((span.duration_ms || 0) / total) * 100;
      const bar = h("span", { class: "wf-bar" + (span.status === "error" ? " error" : "") });
      bar.style.left = left + "%";
      bar.style.width = Math.max(width, 0.3) + "%";
      const label = h("span", { class: "wf-label" }, `${fmt.ms(span.duration_ms || 0)}${span.status === "error" ? " ✕ error" : ""}`);
      if (left + width <= 78) { label.style.left = (left + width) + "%"; label.style.paddingLeft = "4px"; }
      else if (left >= 22) { label.style.right = (100 - left) + "%"; label.style.paddingRight = "4px"; }
      else { label.style.right = (100 - left - width) + "%"; label.style.paddingRight = "4px"; label.classList.add("inside"); }
      const name = h("span", { class: "wf-name" }, span.name || "(unnamed)", " ", h("span", { class: "svc" }, span.service || ""));
      name.style.paddingLeft = depth * 14 + "px";
      const row = h("div", { class: "wf-row", role: "listitem", tabindex: 0, dataset: { spanId: span.span_id || "" },
        title: `${span.name} · starts at +${fmt.ms(span.offset_ms)} · ${fmt.ms(span.duration_ms || 0)}` },
      name, h("span", { class: "wf-track" }, bar, label));
      const open = () => { for (const el of box.querySelectorAll(".wf-row.selected")) el.classList.remove("selected"); row.classList.add("selected"); spanDetail(span, logs, detailBox); };
      row.addEventListener("click", open);
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      box.append(row);
    }
    return box;
  }

  function spanDetail(span, logs, box) {
    const { attrs, events } = attributes(span);
    const own = logs.filter((l) => l.span_id && l.span_id === span.span_id);
    TEA.clear(box).append(h("h2", {}, span.name || "(unnamed)"),
      TEA.facts([["Span", h("code", {}, span.span_id)], ["Parent", span.parent_span_id ? h("code", {}, span.parent_span_id) : "root"],
        ["Service", span.service], ["Start", fmt.time(span.start_time)], ["Offset", "+" + fmt.ms(span.offset_ms)],
        ["Duration", fmt.ms(span.duration_ms || 0)], ["Status", TEA.statusBadge(span.status)], ["Status code", span.status_code]]),
      h("h2", {}, `Span events (${events.length})`),
      events.length ? TEA.table([{ key: "name", label: "Event" }, { key: "time", label: "Time", render: (e) => e.time_unix_nano ? fmt.time(new Date(e.time_unix_nano / 1e6)) : null }],
        events, { label: "Span events" }) : h("p", { class: "empty" }, "None."),
      h("h2", {}, `Logs (${own.length})`), logTable(own),
      h("h2", {}, "Attributes"), TEA.json(attrs));
  }
  function logTable(logs) {
    return TEA.table([
      { key: "timestamp", label: "Time", render: (l) => fmt.time(l.timestamp) },
      { key: "severity", label: "Severity", render: (l) => l.severity_text || (l.severity_number ? String(l.severity_number) : "") },
      { key: "body", label: "Message", render: (l) => (typeof l.body === "string" ? l.body : JSON.stringify(l.body)) },
    ], logs, { label: "Logs", empty: "None." });
  }

  TEA.page(async () => {
    const [tree, logs] = await Promise.all([
      api("/v1/traces/" + encodeURIComponent(traceId)),
      api("/v1/traces/" + encodeURIComponent(traceId) + "/logs", { limit: 1000 }),
    ]);
    const root = TEA.content();
    const detailBox = h("section", { class: "panel span-12", id: "span-detail", "aria-label": "Span detail" },
      h("p", { class: "muted" }, "Select a span to see its attributes, events and logs."));
    const rootSpan = tree.spans[0] || {};
    root.append(h("div", { class: "kpis" },
      TEA.kpi("Root span", h("span", { class: "text" }, rootSpan.name || "–")), TEA.kpi("Duration", fmt.ms(tree.duration_ms)),
      TEA.kpi("Spans", fmt.num(tree.span_count), null, "kpi-spans"), TEA.kpi("Errors", fmt.num(tree.error_count)),
      TEA.kpi("Start", h("span", { class: "text" }, fmt.time(tree.start_time)))),
    h("div", { class: "grid" }, TEA.panel(`Waterfall · ${traceId}`, "span-12", waterfall(tree, logs.logs, detailBox)), detailBox,
      TEA.panel(`Logs of this trace (${logs.logs.length})`, "span-12", logTable(logs.logs))));
  });
})();
