"""Alerts: rules over events and the registry, an evaluator loop, signed webhook notifications."""
from __future__ import annotations

from typing import Any, Callable

from tea.alerts.evaluate import Evaluator
from tea.alerts.notify import Notifier, sign
from tea.alerts.rules import RuleStore, global_rules
from tea.errors import ConfigError
from tea.timeutil import now_us

__all__ = ["Evaluator", "Notifier", "RuleStore", "build_alerts", "sign"]


def build_alerts(settings: Any, storage: Any, registry: Any, clock: Callable[[], int] = now_us) -> Evaluator:
    """The evaluator with its rules and notifier, from the ``alerts.*`` settings. Raises ConfigError."""
    a = settings.alerts
    urls = tuple(u.strip() for u in a.webhook_urls.split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"invalid alerts.webhook_urls={url!r}: expected http:// or https:// URLs")
    notifier = Notifier(urls, a.webhook_secret, timeout_s=a.webhook_timeout_s, retries=a.webhook_retries,
                        backoff_s=a.webhook_backoff_s, max_pending=a.max_pending_notifications)
    rules = RuleStore(storage, global_rules(a.default_rules, a.rules), clock)
    return Evaluator(storage, registry, rules, notifier, interval_s=a.interval_s, clock=clock)
