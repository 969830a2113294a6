"""The alert evaluator: every ``alerts.interval_s``, each enabled rule is checked per tenant and group.

An alert is one (tenant, rule, group): a protocol value (or any ``group_by`` combination) for rate
and latency rules, ``entity_type/entity_id`` for registry rules. Its life:

* the condition holds and nothing is open → ``pending`` (``firing`` at once when ``for_s`` is 0);
* still holding ``for_s`` after it went pending → ``firing`` (webhook notification);
* no longer holding → ``resolved`` (webhook notification if it had fired) and the alert is closed.

The open alerts are storage documents (kind ``alert_state``), every transition is a record (kind
``alert_history``), so state survives a restart. A rule that fails to evaluate leaves its alerts
as they were; a rule that is deleted or disabled resolves its open alerts.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from tea.alerts.notify import Notifier
from tea.alerts.rules import RuleStore
from tea.comms.registry import TRANSITIONS
from tea.lifecycle import Periodic
from tea.timeutil import format_us, now_us
from tea.types import Agg, AggregateSpec, EventFilter

log = logging.getLogger(__name__)
STATES = "alert_state"
HISTORY = "alert_history"
MAX_GROUPS = 1000  # alerts one rule may open per run (a high-cardinality group_by cannot flood storage)
COUNT = Agg("count")
ERRORS = Agg("errors")
THRESHOLD = {"error_rate": ("threshold_percent", "percent"), "latency": ("threshold_ms", "ms"),
             "no_activity": ("duration_s", "s"), "unhealthy": ("duration_s", "s")}
TIME_FIELDS = ("pending_since", "started_at", "resolved_at", "updated_at", "at", "acknowledged_at")


@dataclass
class Observation:
    group: str
    value: float | None
    breach: bool
    labels: dict[str, Any] = field(default_factory=dict)


def render(doc: dict[str, Any]) -> dict[str, Any]:
    """An alert or history row for the API and webhooks: times as RFC 3339."""
    return {k: format_us(v) if k in TIME_FIELDS and isinstance(v, int) else v for k, v in doc.items()}


class Evaluator:
    def __init__(self, storage: Any, registry: Any, rules: RuleStore, notifier: Notifier, *,
                 interval_s: float = 30.0, clock: Callable[[], int] = now_us) -> None:
        self.storage = storage
        self.registry = registry
        self.rules = rules
        self.notifier = notifier
        self.interval_s = interval_s
        self.clock = clock
        self._lock = asyncio.Lock()
        self._entity_cache: dict[Any, list[dict[str, Any]]] = {}
        self.runs = 0
        self.failures = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------ the schedule
    def schedule(self) -> Periodic:
        """``evaluate_once`` every ``interval_s``, the first an interval after start; a failure is logged (when
        it differs from the last one, and every 20th) and the schedule kept."""
        return Periodic("alert evaluator", self._scheduled_run, self.interval_s, at_start=False,
                        failed=self._failed)

    async def _scheduled_run(self) -> None:
        await self.evaluate_once()
        self.last_error = None

    def _failed(self, exc: Exception) -> None:  # storage boundary: log, keep the schedule
        self.failures += 1
        if str(exc) != self.last_error or self.failures % 20 == 0:
            log.exception("alert evaluation failed (%d failures so far)", self.failures)
        self.last_error = str(exc)

    async def evaluate_once(self) -> list[dict[str, Any]]:
        """Evaluate every enabled rule now; returns the transitions made (history rows)."""
        async with self._lock:
            now = self.clock()
            self._entity_cache = {}
            api_rules = await self.rules.api_rules(None)
            active: dict[tuple[str | None, str], dict[str, Any]] = {
                **{(None, r["id"]): r for r in self.rules.globals if r["enabled"]},
                **{(r["tenant_id"], r["id"]): r for r in api_rules if r["enabled"]}}
            seen: dict[tuple[str, str, str], Observation] = {}
            failed: set[tuple[str | None, str]] = set()
            for (tenant, rule_id), rule in active.items():
                try:
                    found = await self.observe(rule, (tenant,) if tenant else None, now)
                except Exception:  # one broken rule must not stop the others
                    log.exception("alert rule %s could not be evaluated", rule_id)
                    failed.add((tenant, rule_id))
                    continue
                for obs_tenant, obs in found:
                    seen[(obs_tenant, rule_id, obs.group)] = obs
            open_alerts = {(t, d["rule_id"], d["group"]): d
                           for t, _, d in await self.storage.list_documents(STATES, None)}
            made: list[dict[str, Any]] = []
            for key in sorted(set(open_alerts) | {k for k, o in seen.items() if o.breach}):
                tenant, rule_id, _ = key
                source = (tenant, rule_id) if (tenant, rule_id) in active else (None, rule_id)
                if source in failed:
                    continue
                rule = active.get(source)
                made.extend(await self._step(tenant, rule, open_alerts.get(key), seen.get(key), key, now))
            self.runs += 1
            return made

    async def acknowledge(self, tenant: str, key: str, alert_id: str, by: str | None,
                          note: str | None) -> dict[str, Any] | None:
        """Mark an open alert acknowledged (who, when, an optional note): it stays open and keeps being
        evaluated; the marks go into its history row when it resolves. None when it is no longer open.
        Runs under the evaluator's lock, so a run in progress cannot write the alert back without them."""
        async with self._lock:
            alert = await self.storage.get_document(STATES, tenant, key)
            if alert is None or alert.get("alert_id") != alert_id:
                return None
            alert.update(acknowledged_at=self.clock(), acknowledged_by=by, acknowledgement_note=note)
            await self.storage.put_document(STATES, tenant, key, alert)
            return alert

    # ------------------------------------------------------------ state machine
    async def _step(self, tenant: str, rule: dict[str, Any] | None, alert: dict[str, Any] | None,
                    obs: Observation | None, key: tuple[str, str, str], now: int) -> list[dict[str, Any]]:
        doc_key = f"{key[1]}/{key[2]}"
        breach = rule is not None and obs is not None and obs.breach
        if alert is None:
            if not breach:
                return []
            assert rule is not None and obs is not None
            name, unit = THRESHOLD[rule["kind"]]
            alert = {"alert_id": str(uuid.uuid4()), "rule_id": rule["id"], "rule_name": rule["name"],
                     "kind": rule["kind"], "severity": rule["severity"], "tenant_id": tenant, "group": obs.group,
                     "labels": obs.labels, "state": "pending", "value": obs.value,
                     "threshold": rule["params"][name], "unit": unit, "pending_since": now, "started_at": None,
                     "resolved_at": None, "updated_at": now}
            if rule["for_s"] <= 0:
                alert.update(state="firing", started_at=now)
            await self.storage.put_document(STATES, tenant, doc_key, alert)
            return [await self._record(tenant, alert, now)]
        if breach:
            assert rule is not None and obs is not None
            alert.update(value=obs.value, updated_at=now)
            made = []
            if alert["state"] == "pending" and now - alert["pending_since"] >= rule["for_s"] * 1_000_000:
                alert.update(state="firing", started_at=now)
                made.append(await self._record(tenant, alert, now))
            await self.storage.put_document(STATES, tenant, doc_key, alert)
            return made
        fired = alert["state"] == "firing"
        alert.update(state="resolved", resolved_at=now, updated_at=now, fired=fired,
                     value=obs.value if obs is not None else None,
                     reason=None if rule is not None else "the rule was deleted or disabled")
        await self.storage.delete_document(STATES, tenant, doc_key)
        return [await self._record(tenant, alert, now, notify=fired)]

    async def _record(self, tenant: str, alert: dict[str, Any], now: int, notify: bool = True) -> dict[str, Any]:
        row = {k: v for k, v in alert.items() if k != "updated_at"}
        await self.storage.append_records(HISTORY, [(tenant, now, row)])
        if notify and alert["state"] in ("firing", "resolved"):
            self.notifier.submit(render({**row, "at": now}))
        log.info("alert %s %s: rule %s tenant %s group %s value %s", alert["alert_id"], alert["state"],
                 alert["rule_id"], tenant, alert["group"], alert["value"])
        return {**row, "at": now}

    # ------------------------------------------------------------ conditions
    async def observe(self, rule: dict[str, Any], tenants: tuple[str, ...] | None,
                      now: int) -> list[tuple[str, Observation]]:
        """(tenant, observation) of every group the rule sees now, at most MAX_GROUPS breaching ones."""
        kind = rule["kind"]
        if kind in ("error_rate", "latency"):
            found = await self._events(rule, tenants, now)
        else:
            found = await self._entities(rule, tenants, now)
        breaching = [item for item in found if item[1].breach]
        if len(breaching) > MAX_GROUPS:
            log.warning("alert rule %s breaches in %d groups; only the %d worst are tracked", rule["id"],
                        len(breaching), MAX_GROUPS)
            breaching.sort(key=lambda item: -(item[1].value or 0))
            keep = {(t, o.group) for t, o in breaching[:MAX_GROUPS]}
            found = [(t, o) for t, o in found if not o.breach or (t, o.group) in keep]
        return found

    async def _events(self, rule: dict[str, Any], tenants: tuple[str, ...] | None,
                      now: int) -> list[tuple[str, Observation]]:
        p = rule["params"]
        f = EventFilter(tenant_ids=tenants, event_type=p["event_type"], protocol=p["protocol"], source=p["source"],
                        target=p["target"], method=p["method"], start_us=now - int(p["window_s"] * 1_000_000),
                        end_us=now + 1)
        group_by = ("tenant_id", *p["group_by"])
        width = len(group_by)
        if rule["kind"] == "error_rate":
            if p["error_status"] is None:
                rows = await self.storage.aggregate(AggregateSpec(f, (COUNT, ERRORS), group_by=group_by))
                stats = {tuple(r[1:1 + width]): (r[-2], r[-1]) for r in rows}
            else:
                totals = await self.storage.aggregate(AggregateSpec(f, (COUNT,), group_by=group_by))
                errors = await self.storage.aggregate(AggregateSpec(replace(f, status=p["error_status"]), (COUNT,),
                                                                    group_by=group_by))
                counted = {tuple(r[1:1 + width]): r[-1] for r in errors}
                stats = {tuple(r[1:1 + width]): (r[-1], counted.get(tuple(r[1:1 + width]), 0)) for r in totals}
            threshold = p["threshold_percent"]
            values = {g: (n, round(100.0 * float(e or 0) / n, 2) if n else None) for g, (n, e) in stats.items()}
        else:
            stat = Agg("avg", "duration_ms") if p["stat"] == "avg" else Agg("quantile", "duration_ms", 0.95)
            rows = await self.storage.aggregate(AggregateSpec(f, (COUNT, stat), group_by=group_by))
            threshold = p["threshold_ms"]
            values = {tuple(r[1:1 + width]): (r[-2], None if r[-1] is None else round(float(r[-1]), 2)) for r in rows}
        out = []
        for groups, (n, value) in values.items():
            if value is None:
                continue
            labels = dict(zip(p["group_by"], groups[1:]))
            group = ",".join(f"{k}={'' if v is None else v}" for k, v in labels.items()) or "*"
            out.append((groups[0], Observation(group, value, n >= p["min_events"] and value > threshold, labels)))
        return out

    async def _entities(self, rule: dict[str, Any], tenants: tuple[str, ...] | None,
                        now: int) -> list[tuple[str, Observation]]:
        p = rule["params"]
        if tenants not in self._entity_cache:
            self._entity_cache[tenants] = await self.registry.entities(tenants)
        out = []
        for e in self._entity_cache[tenants]:
            if e.get("current_state") == "deleted" or p["entity_type"] not in (None, e["entity_type"]):
                continue
            group = f"{e['entity_type']}/{e['entity_id']}"
            labels = {"entity_type": e["entity_type"], "entity_id": e["entity_id"], "entity_name": e.get("entity_name")}
            if rule["kind"] == "no_activity":
                last = e.get("last_activity") or e.get("registered_at") or now
                idle_s = round(max(0, now - last) / 1_000_000, 1)
                out.append((e["tenant_id"], Observation(group, idle_s, idle_s > p["duration_s"], labels)))
            elif e.get("health_status") in p["statuses"]:
                since = await self._unhealthy_since(e, p["statuses"])
                for_s = round(max(0, now - since) / 1_000_000, 1)
                out.append((e["tenant_id"], Observation(group, for_s, for_s >= p["duration_s"], labels)))
        return out

    async def _unhealthy_since(self, entity: dict[str, Any], statuses: list[str]) -> int:
        """When the current run of unhealthy health began: the oldest of the newest transitions that all
        carry an unhealthy health (a repeated "degraded" report does not restart the clock)."""
        rows = await self.storage.query_records(
            TRANSITIONS, tenant_ids=(entity["tenant_id"],),
            filters={"entity_id": entity["entity_id"], "entity_type": entity["entity_type"]}, limit=200)
        since = None
        for _, at, body in rows:
            if body.get("health_status") not in statuses:
                break
            since = at
        if since is None:
            since = entity.get("last_health_check") or entity.get("state_updated_at") or self.clock()
        return since
