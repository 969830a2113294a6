/* /ui/usage — usage and billing per tenant and day or month (GET /v1/usage), with its CSV. */
"use strict";

(() => {
  const { h, api, fmt } = TEA;
  const params = new URLSearchParams(location.search);
  let period = params.get("period") === "month" ? "month" : "day";

  TEA.page(async (r) => {
    const values = { period, start_time: r.startIso, end_time: r.endIso };
    const data = await api("/v1/usage", values);
    const csv = TEA.apiUrl("/v1/usage", { ...values, format: "csv" });
    const choose = h("label", {}, "Period ", h("select", { id: "period", onchange: (e) => { period = e.target.value; TEA.refresh(); } },
      h("option", { value: "day", selected: period === "day" }, "per day"), h("option", { value: "month", selected: period === "month" }, "per month")));
    const total = (key) => data.rows.reduce((a, x) => a + (x[key] || 0), 0);
    TEA.content().append(h("div", { class: "kpis" },
      TEA.kpi("Events", fmt.num(total("events"))), TEA.kpi("Errors", fmt.num(total("errors"))),
      TEA.kpi("Tokens", fmt.num(total("tokens"))), TEA.kpi("Cost", fmt.cost(total("cost"))),
      TEA.kpi("Data in / out", `${fmt.mb(total("data_mb_in"))} / ${fmt.mb(total("data_mb_out"))}`)),
    h("div", { class: "grid" }, TEA.panel("Usage and billing", "span-12",
      h("div", { class: "actions" }, choose, h("a", { href: csv, download: `tea-usage-${period}.csv`, id: "csv" }, "Download CSV")),
      TEA.table([
        { key: "tenant_id", label: "Tenant" },
        { key: "period_start", label: period === "day" ? "Day" : "Month", render: (x) => x.period_start.slice(0, period === "day" ? 10 : 7) },
        { key: "events", label: "Events", num: true, render: (x) => fmt.num(x.events) },
        { key: "errors", label: "Errors", num: true, render: (x) => fmt.num(x.errors) },
        { key: "tokens", label: "Tokens", num: true, render: (x) => fmt.num(x.tokens) },
        { key: "cost", label: "Cost", num: true, render: (x) => fmt.cost(x.cost) },
        { key: "data_mb_in", label: "MB in", num: true, cls: "hide-narrow", render: (x) => x.data_mb_in.toFixed(2) },
        { key: "data_mb_out", label: "MB out", num: true, render: (x) => x.data_mb_out.toFixed(2) },
        { key: "unique_users", label: "Users", num: true, render: (x) => fmt.num(x.unique_users) },
        { key: "requests_by_method", label: "Top methods", cls: "hide-narrow", render: (x) => Object.entries(x.requests_by_method)
          .sort((a, b) => b[1] - a[1]).slice(0, 3).map(([m, n]) => `${m} ${fmt.num(n)}`).join(" · ") },
      ], data.rows, { label: "Usage", empty: "No usage in this range." }))));
  });
})();
