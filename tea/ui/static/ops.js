/* /ui/ops (admins) — health (GET /health), readiness (GET /readyz), the durable buffer and the writer, and
   the processors' dead-letter queue with replay (GET /v1/dlq, POST /v1/dlq/{id}/replay). */
"use strict";

(() => {
  const { h, api, fmt } = TEA;

  async function readiness() {  // 503 is an answer here, not a failure: read it without throwing
    const res = await fetch("/readyz", { headers: { accept: "application/json" }, credentials: "same-origin" });
    return res.json();
  }
  async function replay(entry, button) {
    button.disabled = true;
    try {
      await TEA.request("POST", "/v1/dlq/" + encodeURIComponent(entry.id) + "/replay", {}, {});
      await TEA.refresh();
    } catch (e) { button.disabled = false; TEA.showError(e); }
  }

  TEA.page(async () => {
    const [health, ready, dlq] = await Promise.all([api("/health", {}, { tenant: false }), readiness(),
      api("/v1/dlq", { limit: 200, include_replayed: "true" }, { tenant: false })]);
    const entries = dlq.entries;
    const used = health.buffer_max_bytes ? health.buffer_bytes / health.buffer_max_bytes : 0;
    TEA.content().append(h("div", { class: "kpis" },
      TEA.kpi("Health", TEA.statusBadge(health.status)), TEA.kpi("Ready", TEA.badge(ready.ready ? "ready" : ready.reason || "not ready", ready.ready ? "ok" : "bad")),
      TEA.kpi("Buffer", `${(used * 100).toFixed(1)} %`, `${fmt.bytes(health.buffer_bytes)} of ${fmt.bytes(health.buffer_max_bytes)}`),
      TEA.kpi("Writer lag", `${health.writer_lag_seconds.toFixed(2)} s`), TEA.kpi("Dead letters", fmt.num(entries.filter((e) => !e.replayed_at).length))),
    h("div", { class: "grid" },
      TEA.panel("Service", "span-6", TEA.facts([
        ["Version", health.version], ["Uptime", `${fmt.num(health.uptime_seconds)} s`], ["Authentication", health.auth],
        ["Storage", h("span", {}, TEA.statusBadge(health.storage), " ", health.storage_backend)],
        ["Events stored", fmt.num(health.events_stored)], ["Data directory", fmt.bytes(health.data_dir_bytes)],
        ["Retention", `${health.retention_hours} h · purged ${fmt.num(health.retention_purged_total)}`],
        ["Last retention error", health.retention_last_error || "none"]])),
      TEA.panel("Durable buffer and writer", "span-6", TEA.facts([
        ["Buffer backlog", `${fmt.bytes(health.buffer_bytes)} in ${health.buffer_segments} segment(s)`],
        ["Writer lag", `${health.writer_lag_seconds.toFixed(3)} s`], ["Events written", fmt.num(health.events_written)],
        ["Duplicates skipped", fmt.num(health.duplicates_skipped)], ["Storage failures", fmt.num(health.storage_failures)],
        ["Dead-lettered events", fmt.num(health.dead_lettered)], ["Last storage error", health.last_storage_error || "none"],
        ["Readiness", ready.ready ? "ready" : ready.reason]])),
      TEA.panel("Dead-letter queue (processors)", "span-12", TEA.table([
        { key: "at", label: "When", render: (e) => fmt.time(e.at) },
        { key: "stage", label: "Processor" },
        { key: "event_count", label: "Events", num: true, render: (e) => fmt.num(e.event_count) },
        { key: "attempts", label: "Attempts", num: true },
        { key: "error", label: "Error" },
        { key: "replay", label: "Replay", render: (e) => e.replayed_at ? TEA.badge("replayed " + fmt.time(e.replayed_at), "ok")
          : h("button", { type: "button", class: "secondary", onclick: (ev) => replay(e, ev.currentTarget) }, "Replay") },
      ], entries, { label: "Dead letters", empty: "No dead letters." }))));
  });
})();
