"""The plugin manager: TEA's built-ins, then third-party plugins from the ``tea.plugins`` entry points,
then any passed in (tests). Built by a factory, never at import time."""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import pluggy

from tea import builtins, hookspecs
from tea.errors import ConfigError

if TYPE_CHECKING:
    from tea.settings import Settings
    from tea.storage.base import Storage

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


def make_storage(settings: "Settings", pm: pluggy.PluginManager | None = None) -> "Storage":
    """The backend named by ``storage_backend``, from the first plugin that provides it."""
    pm = pm or make_plugin_manager()
    storage = pm.hook.register_storage(settings=settings)
    if storage is None:
        names = sorted({name for group in pm.hook.storage_backends() for name in group})
        raise ConfigError(f"invalid storage_backend={settings.storage_backend!r}: no plugin provides it "
                          f"(available: {', '.join(names) or 'none'})")
    return storage  # type: ignore[no-any-return]


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
