"""Alert rules: their shape per kind, validation, the seed's four defaults and the API's rule store.

A rule is ``{id, name, kind, params, severity, for_s, enabled}``. Kinds and their ``params``:

* ``error_rate`` — errors / events × 100 over ``window_s``, per ``group_by`` (default ``protocol``),
  above ``threshold_percent``. An error is ``status == error_status`` (default ``error``, as the
  seed's ``system_health_overview``); ``error_status: null`` counts TEA's broader definition
  (status error/timeout, or an HTTP status ≥ 400). Groups with fewer than ``min_events`` are skipped.
* ``latency`` — ``stat`` (``avg`` or ``p95``) of ``duration_ms`` over ``window_s`` per group, above
  ``threshold_ms``.
* ``no_activity`` — a registry entity's ``last_activity`` (``registered_at`` if it never had any)
  older than ``duration_s``; entities in state ``deleted`` are ignored.
* ``unhealthy`` — a registry entity whose ``health_status`` has been in ``statuses`` (degraded,
  unhealthy) continuously for at least ``duration_s``.

Default and settings rules apply to every tenant and cannot be deleted through the API; API rules
are documents (kind ``alert_rule``) of their tenant.
"""
from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Iterable, Literal, Union

import msgspec
from msgspec import Meta

from tea.errors import BadRequest, ConfigError, Conflict
from tea.types import GROUPABLE

RULES = "alert_rule"
KINDS = ("error_rate", "latency", "no_activity", "unhealthy")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"field `([^`]+)`")
GROUP_COLUMNS = tuple(c for c in GROUPABLE if c != "tenant_id")  # alerts are per tenant anyway

Seconds = Annotated[float, Meta(gt=0, le=30 * 86400)]
Text = Annotated[str, Meta(min_length=1, max_length=255)]


class _Filters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which events a rate or latency rule looks at (each: equals this value)."""

    event_type: Text | None = "communication"
    protocol: Text | None = None
    source: Text | None = None
    target: Text | None = None
    method: Text | None = None
    group_by: Union[str, list[str]] = "protocol"
    min_events: Annotated[int, Meta(ge=1)] = 1


class ErrorRateParams(_Filters, forbid_unknown_fields=True, kw_only=True):
    threshold_percent: Annotated[float, Meta(ge=0, le=100)]
    window_s: Seconds = 300.0
    error_status: Text | None = "error"


class LatencyParams(_Filters, forbid_unknown_fields=True, kw_only=True):
    threshold_ms: Annotated[float, Meta(ge=0)]
    stat: Literal["avg", "p95"] = "avg"
    window_s: Seconds = 300.0


class NoActivityParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    duration_s: Seconds
    entity_type: Text | None = None


class UnhealthyParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    duration_s: Annotated[float, Meta(ge=0, le=30 * 86400)]
    entity_type: Text | None = None
    statuses: Annotated[list[Text], Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: ["degraded", "unhealthy"])


PARAMS: dict[str, type[msgspec.Struct]] = {"error_rate": ErrorRateParams, "latency": LatencyParams,
                                           "no_activity": NoActivityParams, "unhealthy": UnhealthyParams}


class RuleBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/alerts/rules``; ``params`` depend on ``kind``."""

    name: Text
    kind: Literal["error_rate", "latency", "no_activity", "unhealthy"]
    params: dict[str, Any] = {}
    id: str | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    for_s: Annotated[float, Meta(ge=0, le=30 * 86400)] = 0.0
    enabled: bool = True
    tenant_id: str | None = None


def rule_bodies() -> Any:
    """``POST /v1/alerts/rules``' body for the OpenAPI document: one shape per kind, with its ``params``."""
    group_by = Annotated[Union[Literal[GROUP_COLUMNS], list[Literal[GROUP_COLUMNS]]],  # type: ignore[valid-type]
                         Meta(extra_json_schema={"maxItems": 4, "uniqueItems": True})]
    shapes = []
    for kind, params in PARAMS.items():
        fields = [(f.name, group_by if f.name == "group_by" else f.type,
                   f.default if f.default is not msgspec.NODEFAULT else msgspec.field(default_factory=f.default_factory)
                   if f.default_factory is not msgspec.NODEFAULT else msgspec.NODEFAULT)
                  for f in msgspec.structs.fields(params)]
        documented = msgspec.defstruct(params.__name__, [f if f[2] is not msgspec.NODEFAULT else f[:2] for f in fields],
                                       forbid_unknown_fields=True, kw_only=True)
        shapes.append(msgspec.defstruct(
            "".join(part.capitalize() for part in kind.split("_")) + "Rule",
            [("name", Text), ("kind", Literal[kind]), ("params", documented),
             ("id", Annotated[str, Meta(pattern=_ID.pattern)] | None, None),
             ("severity", Literal["info", "warning", "critical"], "warning"),
             ("for_s", Annotated[float, Meta(ge=0, le=30 * 86400)], 0.0), ("enabled", bool, True),
             ("tenant_id", str | None, None)], forbid_unknown_fields=True, kw_only=True))
    return Union[tuple(shapes)]


def _field(message: str, prefix: str = "") -> str | None:
    at = _AT.search(message)
    path = at.group(1) if at else ""
    named = _FIELD.search(message)
    if named and ("missing required" in message or "unknown field" in message):
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    path = prefix + path
    return path or None


def _invalid(message: str, prefix: str = "") -> BadRequest:
    field = _field(message, prefix)
    text = _AT.sub("", message)
    return BadRequest(f"invalid rule: {text}" + (f" (field `{field}`)" if field else ""), code="invalid_rule",
                      details={"field": field})


def parse_rule(raw: dict[str, Any]) -> dict[str, Any]:
    """A validated rule dict (without id/source/tenant) from a request body; BadRequest naming the field."""
    try:
        body = msgspec.convert(raw, RuleBody)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    if body.id is not None and not _ID.match(body.id):
        raise BadRequest("invalid rule: `id` must be 1 to 64 letters, digits or _ . : -", code="invalid_rule",
                         details={"field": "id"})
    try:
        params = msgspec.convert(body.params, PARAMS[body.kind])
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), "params.") from None
    out = msgspec.to_builtins(params)
    if "group_by" in out:
        group_by = [out["group_by"]] if isinstance(out["group_by"], str) else list(out["group_by"])
        bad = [g for g in group_by if g not in GROUP_COLUMNS]
        if bad or len(group_by) > 4 or len(set(group_by)) != len(group_by):
            raise BadRequest(f"invalid rule: `params.group_by` takes up to 4 distinct columns of "
                             f"{', '.join(GROUP_COLUMNS)}; got {bad[0] if bad else group_by!r}", code="invalid_rule",
                             details={"field": "params.group_by"})
        out["group_by"] = group_by
    return {"id": body.id, "name": body.name, "kind": body.kind, "params": out, "severity": body.severity,
            "for_s": body.for_s, "enabled": body.enabled, "tenant_id": body.tenant_id}


def default_rules() -> list[dict[str, Any]]:
    """The seed's four: error rate > 5 % per protocol over 5 min, no activity > 1 h, average latency >
    1000 ms over 5 min, unhealthy > 10 min."""
    specs = [("default-error-rate", "Error rate above 5 % per protocol (5 min)", "error_rate",
              {"threshold_percent": 5, "window_s": 300}, "critical"),
             ("default-no-activity", "No activity for 1 h", "no_activity", {"duration_s": 3600}, "warning"),
             ("default-latency", "Average latency above 1000 ms per protocol (5 min)", "latency",
              {"threshold_ms": 1000, "stat": "avg", "window_s": 300}, "warning"),
             ("default-unhealthy", "Entity unhealthy for 10 min", "unhealthy", {"duration_s": 600}, "critical")]
    out = []
    for rule_id, name, kind, params, severity in specs:
        rule = parse_rule({"id": rule_id, "name": name, "kind": kind, "params": params, "severity": severity})
        out.append({**rule, "source": "default", "tenant_id": None})
    return out


def global_rules(use_defaults: bool, configured: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Default and settings rules (every tenant). Raises ConfigError naming the rule and field."""
    out = default_rules() if use_defaults else []
    seen = {r["id"] for r in out}
    for index, raw in enumerate(configured):
        try:
            rule = parse_rule(raw)
        except BadRequest as exc:
            raise ConfigError(f"invalid alerts.rules[{index}]: {exc.message}") from None
        if rule["id"] is None or rule["id"] in seen:
            raise ConfigError(f"invalid alerts.rules[{index}]: needs an `id` unique among the rules"
                              + (f" ({rule['id']!r} is taken)" if rule["id"] else ""))
        if rule["tenant_id"] is not None:
            raise ConfigError(f"invalid alerts.rules[{index}]: settings rules apply to every tenant; "
                              "create tenant rules with POST /v1/alerts/rules")
        seen.add(rule["id"])
        out.append({**rule, "source": "settings", "tenant_id": None})
    return tuple(out)


class RuleStore:
    """API rules (per tenant, in storage) beside the global default and settings rules."""

    def __init__(self, storage: Any, globals_: tuple[dict[str, Any], ...], clock: Any) -> None:
        self.storage = storage
        self.globals = globals_
        self.clock = clock

    def global_rule(self, rule_id: str) -> dict[str, Any] | None:
        return next((r for r in self.globals if r["id"] == rule_id), None)

    async def create(self, tenant: str, rule: dict[str, Any]) -> dict[str, Any]:
        rule_id = rule["id"] or "rule_" + uuid.uuid4().hex[:16]
        if self.global_rule(rule_id) is not None or await self.storage.get_document(RULES, tenant, rule_id):
            raise Conflict(f"a rule {rule_id!r} exists already", code="rule_exists", details={"field": "id"})
        stored = {**rule, "id": rule_id, "tenant_id": tenant, "source": "api", "created_at": self.clock()}
        await self.storage.put_document(RULES, tenant, rule_id, stored)
        return stored

    async def api_rules(self, tenants: tuple[str, ...] | None) -> list[dict[str, Any]]:
        return [{**doc, "tenant_id": tenant} for tenant, _, doc in await self.storage.list_documents(RULES, tenants)]

    async def find(self, tenants: tuple[str, ...] | None, rule_id: str) -> list[dict[str, Any]]:
        found = self.global_rule(rule_id)
        if found is not None:
            return [found]
        return [r for r in await self.api_rules(tenants) if r["id"] == rule_id]

    async def delete(self, tenant: str, rule_id: str) -> bool:
        return await self.storage.delete_document(RULES, tenant, rule_id)
