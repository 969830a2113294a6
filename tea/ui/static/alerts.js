/* /ui/alerts — what is pending or firing now (GET /v1/alerts/active) with Acknowledge
   (POST /v1/alerts/{alert_id}/acknowledge), the rules (GET /v1/alerts/rules) and the history of the
   range (GET /v1/alerts). */
"use strict";

(() => {
  const { h, api, fmt } = TEA;
  const value = (a) => (a.value === null || a.value === undefined ? "–" : `${a.value} ${a.unit || ""}`.trim());

  async function acknowledge(alert, button) {
    button.disabled = true;
    try {
      await TEA.post("/v1/alerts/" + encodeURIComponent(alert.alert_id) + "/acknowledge", {}, { tenant_id: alert.tenant_id });
      await TEA.refresh();
    } catch (e) { button.disabled = false; TEA.showError(e); }
  }

  TEA.page(async (r) => {
    const [active, rules, history] = await Promise.all([
      api("/v1/alerts/active"), api("/v1/alerts/rules"),
      api("/v1/alerts", { start_time: r.startIso, end_time: r.endIso, limit: 200 }),
    ]);
    const firing = active.alerts.filter((a) => a.state === "firing").length;
    TEA.content().append(h("div", { class: "kpis" },
      TEA.kpi("Firing", fmt.num(firing), null, "kpi-firing"), TEA.kpi("Pending", fmt.num(active.alerts.length - firing)),
      TEA.kpi("Rules", fmt.num(rules.rules.length)), TEA.kpi("Transitions in range", fmt.num(history.alerts.length))),
    h("div", { class: "grid" },
      TEA.panel("Open alerts", "span-12", TEA.table([
        { key: "state", label: "State", render: (a) => TEA.statusBadge(a.state) },
        { key: "severity", label: "Severity", render: (a) => TEA.badge(a.severity, a.severity === "critical" ? "bad" : "warn") },
        { key: "rule_name", label: "Rule" },
        ...(TEA.isAdmin && !TEA.state.tenant ? [{ key: "tenant_id", label: "Tenant" }] : []),
        { key: "group", label: "Group" },
        { key: "value", label: "Value", num: true, render: value },
        { key: "threshold", label: "Threshold", num: true, render: (a) => `${a.threshold} ${a.unit || ""}` },
        { key: "since", label: "Since", render: (a) => fmt.time(a.started_at || a.pending_since) },
        { key: "ack", label: "Acknowledged", render: (a) => a.acknowledged_at
          ? h("span", {}, TEA.badge("acknowledged", "ok"), " ", h("span", { class: "muted" }, `${a.acknowledged_by || ""} ${fmt.time(a.acknowledged_at)}`))
          : h("button", { type: "button", class: "secondary", onclick: (e) => acknowledge(a, e.currentTarget) }, "Acknowledge") },
      ], active.alerts, { label: "Open alerts", empty: "Nothing is pending or firing." })),
      TEA.panel("Rules", "span-12", TEA.table([
        { key: "name", label: "Rule" }, { key: "kind", label: "Kind" },
        { key: "severity", label: "Severity" },
        { key: "enabled", label: "Enabled", render: (x) => TEA.badge(x.enabled ? "on" : "off", x.enabled ? "ok" : "warn") },
        { key: "for_s", label: "For", num: true, render: (x) => `${x.for_s} s` },
        { key: "source", label: "From" },
        { key: "params", label: "Parameters", cls: "hide-narrow", render: (x) => Object.entries(x.params).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length)).map(([k, v]) => `${k}=${v}`).join(" ") },
      ], rules.rules, { label: "Alert rules" })),
      TEA.panel("History (this range)", "span-12", TEA.table([
        { key: "at", label: "When", render: (a) => fmt.time(a.at) },
        { key: "state", label: "State", render: (a) => TEA.statusBadge(a.state) },
        { key: "rule_name", label: "Rule" }, { key: "group", label: "Group" },
        { key: "value", label: "Value", num: true, render: value },
        { key: "acknowledged_by", label: "Acknowledged by" },
      ], history.alerts, { label: "Alert history", empty: "No alert changed state in this range." }))));
  });
})();
