/* /ui/registry — registered entities with state, health and last activity (GET /v1/registry), the
   registration gaps (GET /v1/registry/gaps) and the hierarchy (GET /v1/registry/hierarchy). */
"use strict";

(() => {
  const { h, api, fmt } = TEA;

  function tree(rows) {
    if (!rows.length) return h("p", { class: "empty" }, "No entities.");
    const byParent = new Map();
    for (const r of rows) {
      const parent = r.parent_entity_id || "";
      if (!byParent.has(parent)) byParent.set(parent, []);
      byParent.get(parent).push(r);
    }
    const ids = new Set(rows.map((r) => r.entity_id));
    const seen = new Set();
    const list = (parent) => h("ul", {}, (byParent.get(parent) || []).map((r) => {
      if (seen.has(r.entity_id)) return null;
      seen.add(r.entity_id);
      return h("li", {}, h("strong", {}, r.entity_name || r.entity_id), " ", h("span", { class: "muted" }, `${r.entity_type} · ${r.entity_id}`),
        byParent.has(r.entity_id) ? list(r.entity_id) : null);
    }));
    const roots = [...byParent.keys()].filter((p) => p === "" || !ids.has(p));
    return h("div", { class: "tree" }, roots.map(list));
  }

  TEA.page(async () => {
    const needTenant = TEA.isAdmin && !TEA.state.tenant;
    const [entities, gaps, hierarchy] = await Promise.all([
      api("/v1/registry"),
      needTenant ? null : api("/v1/registry/gaps"),
      needTenant ? null : api("/v1/registry/hierarchy"),
    ]);
    const rows = entities.entities || entities.rows || [];
    const pick = () => h("p", { class: "muted" }, "Pick a tenant in the toolbar to see its registration gaps and hierarchy.");
    TEA.content().append(h("div", { class: "grid" },
      TEA.panel(`Entities (${rows.length})`, "span-12", TEA.table([
        ...(needTenant ? [{ key: "tenant_id", label: "Tenant" }] : []),
        { key: "entity_name", label: "Name", render: (e) => e.entity_name || e.entity_id },
        { key: "entity_type", label: "Type" },
        { key: "current_state", label: "State", render: (e) => TEA.statusBadge(e.current_state) },
        { key: "health_status", label: "Health", render: (e) => TEA.statusBadge(e.health_status) },
        { key: "last_activity", label: "Last activity", render: (e) => fmt.time(e.last_activity) },
        { key: "parent_entity_id", label: "Parent", cls: "hide-narrow" },
        { key: "entity_id", label: "Id", cls: "hide-narrow mono" },
      ], rows, { label: "Entities", empty: "No registered entities (POST /v1/registry, or the n8n webhook)." })),
      TEA.panel("Registration gaps", "span-6", needTenant ? pick() : TEA.table([
        { key: "gap_type", label: "Gap", render: (g) => TEA.badge(g.gap_type.replace(/_/g, " "), "warn") },
        { key: "entity_identifier", label: "Entity" },
        { key: "details", label: "Details", render: (g) => Object.entries(g.details || {}).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v ?? "–"}`).join(" · ") },
      ], gaps.rows || [], { label: "Registration gaps", empty: "No gaps: everything that communicates is registered and active." })),
      TEA.panel("Hierarchy", "span-6", needTenant ? pick() : tree(hierarchy.rows || []))));
  });
})();
