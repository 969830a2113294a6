"""Telemetron's ``config.toml`` (and its ``TELEMETRON_*`` overrides) read as TEA settings.

``[http]``, ``[processor]``, ``[validation.plugins.SourceIdValidator|EventTypeValidator]`` and
``[processing.plugins.StorageProcessor]`` translate; anything else (sections, keys, plugins, keys in a
plugin's table, ``TELEMETRON_*`` variables) is reported as a warning, and so is an empty allow list."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

_VALIDATORS = {"SourceIdValidator": "validation.source_ids", "EventTypeValidator": "validation.event_types"}
_ALLOWS = {"SourceIdValidator": "source ids", "EventTypeValidator": "event types"}
_BUILT_IN_PROCESSORS = {"StorageProcessor"}  # TEA's own storage does what it did


def _direct(table: Iterable[Any]) -> dict[tuple[str, ...], str]:
    """Telemetron's (section, key) -> TEA's setting key, as the settings declare it (``telemetron=...``)."""
    return {tuple(s.telemetron.split(".")): s.key for s in table if s.telemetron}


def is_telemetron(raw: Mapping[str, Any]) -> bool:
    plugins = lambda section: isinstance(raw.get(section), dict) and "plugins" in raw[section]  # noqa: E731
    return "http" in raw or "processor" in raw or plugins("validation") or plugins("processing")


def translate(raw: Mapping[str, Any], table: Iterable[Any]) -> tuple[dict[str, Any], list[str]]:
    """TEA setting key → value, and a warning for everything TEA does not take over; ``table`` is the
    settings table (tea.settings.SETTINGS), handed in so this module needs nothing of the settings."""
    direct = _direct(table)
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for section, table in raw.items():
        if section in ("http", "processor") and isinstance(table, dict):
            for key, value in table.items():
                if (section, key) in direct:
                    out[direct[(section, key)]] = value
                else:
                    warnings.append(f"Telemetron setting [{section}] {key} is not supported by TEA; ignored")
        elif section == "validation" and isinstance(table, dict):
            warnings.extend(_unknown_keys(table, {"plugins"}, "[validation]"))
            for name, params in table.get("plugins", {}).items():
                if name in _VALIDATORS:
                    params = params if isinstance(params, dict) else {}
                    allowed = params.get("allowed", [])
                    out[_VALIDATORS[name]] = ",".join(str(v) for v in allowed)
                    warnings.extend(_unknown_keys(params, {"allowed"}, f"[validation.plugins.{name}]"))
                    if not allowed:
                        warnings.append(f"Telemetron validation plugin {name}: the allow list is empty, so it "
                                        f"allows all {_ALLOWS[name]}")
                else:
                    warnings.append(f"Telemetron validation plugin {name} is not available in TEA; ignored")
        elif section == "processing" and isinstance(table, dict):
            warnings.extend(_unknown_keys(table, {"plugins"}, "[processing]"))
            for name, params in table.get("plugins", {}).items():
                if name not in _BUILT_IN_PROCESSORS:
                    warnings.append(f"Telemetron processing plugin {name} is not available in TEA (install a TEA "
                                    "processor plugin instead); ignored")
                elif isinstance(params, dict):
                    warnings.extend(_unknown_keys(params, set(), f"[processing.plugins.{name}]"))
        else:
            warnings.append(f"Telemetron section [{section}] is not supported by TEA; ignored")
    return out, warnings


def _unknown_keys(table: Mapping[str, Any], known: set[str], where: str) -> list[str]:
    # upstream refuses these at start (deny_unknown_fields); TEA starts, and says so
    return [f"Telemetron setting {where} {key} is not supported by TEA; ignored" for key in table if key not in known]


def unsupported_env(env: Mapping[str, str], table: Iterable[Any]) -> list[str]:
    """A warning for each ``TELEMETRON_*`` variable TEA does not take over; those it does
    (``TELEMETRON_HTTP__PORT``, ...) are environment names of their settings in ``table``."""
    known = {name for s in table for name in s.env_names if name.startswith("TELEMETRON_")}
    return [f"Telemetron environment variable {name} is not supported by TEA; ignored"
            for name in sorted(env) if name.startswith("TELEMETRON_") and name not in known]
