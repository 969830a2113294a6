"""The plugin manager: TEA's built-ins, then third-party plugins from the ``tea.plugins`` entry points,
then any passed in (tests). Built by a factory, never at import time."""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from tea import builtins, hookspecs

ENTRY_POINT_GROUP = "tea.plugins"


def make_plugin_manager(extra: Iterable[Any] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("tea")
    pm.add_hookspecs(hookspecs)
    pm.register(builtins, name="tea.builtins")
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    return pm


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    source: str       # "built-in", "entry point <dist> <version>", or "passed in"


def describe(pm: pluggy.PluginManager) -> list[PluginInfo]:
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        module = getattr(plugin, "__name__", type(plugin).__name__)
        if plugin is builtins:
            source = "built-in"
        elif id(plugin) in dists:
            dist = dists[id(plugin)]
            source = f"entry point {dist.metadata['name']} {dist.version}"
        else:
            source = "passed in"
        out.append(PluginInfo(name, module, source))
    return out


def entry_points() -> list[str]:
    return [f"{ep.name} = {ep.value}" for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
