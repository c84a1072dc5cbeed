"""Finds, orders and registers plugins; the only place that knows how plugins are loaded."""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from proxy import hookspecs

ENTRY_POINT_GROUP = "fhirplug.plugins"
log = logging.getLogger("fhirplug.plugins")


class PluginLoadError(RuntimeError):
    pass


def _resolve(name: str):
    """A plugin by entry-point name, or by ``package.module`` path for plugins not installed."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    if "." in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginLoadError(f"plugin {name!r}: {exc}") from exc
        return getattr(module, attr) if attr else module
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise PluginLoadError(f"unknown plugin {name!r}; installed: {', '.join(known) or 'none'}")


def build_plugin_manager(
    names: list[str], extra: Sequence[object] = (), builtins: Sequence[tuple[str, object]] = ()
) -> pluggy.PluginManager:
    """Register ``names`` so that hooks run in the listed order (first listed runs first).

    ``builtins`` (authentication) run before everything and cannot be configured away;
    ``extra`` objects (used by tests) run after the named plugins. A named plugin that is an
    object is registered as this manager's own copy, so configuring one app
    (``fhirplug_configure``) never changes another's; a module plugin holds no configuration and
    is shared. Fails at start on an unknown plugin, a misspelt hook or a requirement no earlier
    plugin provides (:func:`check_requirements`), so a typo or a missing plugin can never
    silently disable a rule.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    taken = {n for n, _ in builtins}
    if clash := taken.intersection(names):
        raise PluginLoadError(f"plugin name(s) {sorted(clash)} are built in and always on")
    plugins = (
        list(builtins)
        + [(n, _own(_resolve(n))) for n in names]
        + [(f"extra-{i}", p) for i, p in enumerate(extra)]
    )
    check_requirements(plugins)
    # pluggy calls the most recently registered implementation first, so register in reverse.
    for name, plugin in reversed(plugins):
        pm.register(plugin, name=name)
    pm.check_pending()
    log.info(
        "plugins resolved",
        extra={"fields": {"event": "plugins_resolved", "order": [n for n, _ in plugins]}},
    )
    return pm


def _own(plugin: object) -> object:
    return plugin if isinstance(plugin, ModuleType) else copy.copy(plugin)


def check_requirements(plugins: list[tuple[str, object]]) -> None:
    """Refuse a plugin list in which a plugin requires something (its ``requires`` names, e.g.
    ``("message",)``) that no plugin listed before it provides (its ``provides``): without the
    check such a plugin would silently do nothing."""
    provided: set[str] = set()
    for name, plugin in plugins:
        for need in getattr(plugin, "requires", ()):
            if need in provided:
                continue
            later = [n for n, p in plugins if need in getattr(p, "provides", ())]
            if later:
                why = f"{', '.join(repr(n) for n in later)} provides it but is listed after {name!r}"
            else:
                installed = _installed_providers(need)
                why = "no enabled plugin provides it" + (
                    f" (installed plugins that do: {', '.join(installed)})" if installed else ""
                )
            raise PluginLoadError(
                f"plugin {name!r} requires {need!r}, and {why}: enable a plugin that provides "
                f"{need!r} and list it before {name!r} in FHIRPLUG_PLUGINS, or leave {name!r} out"
            )
        provided.update(getattr(plugin, "provides", ()))


def _installed_providers(need: str) -> list[str]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = ep.load()
        except Exception:  # a plugin that cannot load is reported when it is enabled
            continue
        if need in getattr(plugin, "provides", ()):
            found.append(ep.name)
    return sorted(found)


def plugin_order(pm: pluggy.PluginManager, hook: str) -> list[str]:
    """Names of the plugins implementing ``hook``, in calling order."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    return [impl.plugin_name for impl in reversed(impls)]
