"""Plugin discovery: entry points in the `migrate.plugins` group, registered with pluggy.

Nothing happens at import time; `discover()` builds a fresh registry. A plugin that fails to import is
logged and skipped, and becomes an error only when the user selects it. Two components claiming one name
are an error naming both distributions, again only when selected (so `plugins list` still works and shows
the clash). `MIGRATE_DISABLE_PLUGINS=a,b` blocks plugins and components by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
import structlog

from . import hookspecs
from .errors import PluginError
from .specs import ComponentSpec, Kind

ENTRY_POINT_GROUP = "migrate.plugins"
DISABLE_ENV = "MIGRATE_DISABLE_PLUGINS"
KINDS: tuple[Kind, ...] = ("source", "storage", "sink")
_HOOK_OF_KIND = {
    "source": "migrate_register_sources",
    "storage": "migrate_register_storages",
    "sink": "migrate_register_sinks",
}

log = structlog.get_logger("migrate.plugins")


@dataclass(frozen=True)
class FailedPlugin:
    name: str
    distribution: str
    version: str
    error: str
    kind: str = ""


@dataclass
class Registry:
    """Everything discovered: components by kind and name, and what failed to load."""

    pm: pluggy.PluginManager
    components: dict[Kind, dict[str, ComponentSpec]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failed: list[FailedPlugin] = field(default_factory=list)
    disabled: frozenset[str] = frozenset()
    clashes: dict[tuple[Kind, str], list[str]] = field(default_factory=dict)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: Kind, name: str) -> ComponentSpec:
        """The component `name` of `kind`, or a PluginError that says why not and lists the choices."""
        if name in self.disabled:
            raise PluginError(f"{kind} {name!r} is disabled by {DISABLE_ENV}")
        clash = self.clashes.get((kind, name))
        if clash:
            raise PluginError(
                f"{kind} {name!r} is provided by more than one distribution: {', '.join(clash)}; "
                "uninstall one or disable it with " + DISABLE_ENV
            )
        spec = self.components[kind].get(name)
        if spec is not None:
            return spec
        for failure in self.failed:
            if failure.name == name and failure.kind in ("", kind):
                raise PluginError(f"{kind} plugin {name!r} failed to load: {failure.error}")
        choices = ", ".join(self.names(kind)) or "none installed"
        raise PluginError(f"unknown {kind} {name!r}; choose one of: {choices}")

    def as_json(self) -> dict[str, Any]:
        def row(spec: ComponentSpec) -> dict[str, Any]:
            return {
                "name": spec.name,
                "kind": spec.kind,
                "description": spec.description,
                "distribution": spec.distribution,
                "version": spec.version,
            }

        return {
            "sources": [row(s) for s in sorted(self.components["source"].values(), key=lambda s: s.name)],
            "storages": [row(s) for s in sorted(self.components["storage"].values(), key=lambda s: s.name)],
            "sinks": [row(s) for s in sorted(self.components["sink"].values(), key=lambda s: s.name)],
            "failed": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "distribution": f.distribution,
                    "version": f.version,
                    "error": f.error,
                }
                for f in self.failed
            ],
        }


def disabled_names(env: dict[str, str] | None = None) -> frozenset[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def discover(extra_plugins: Iterable[object] = (), env: dict[str, str] | None = None) -> Registry:
    """Build a plugin manager from installed entry points (plus `extra_plugins`, used by tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm, disabled=disabled_names(env))
    origin: dict[str, tuple[str, str]] = {}

    for ep in _entry_points():
        dist, version = _dist_of(ep)
        if ep.name in registry.disabled:
            log.debug("plugin_disabled", plugin=ep.name)
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            error = f"{type(exc).__name__}: {exc}"
            registry.failed.append(FailedPlugin(ep.name, dist, version, error))
            log.warning("plugin_import_failed", plugin=ep.name, distribution=dist, error=error)
            continue
        plugin_name = f"{dist}:{ep.name}"
        if pm.is_registered(module) or pm.has_plugin(plugin_name):
            continue
        pm.register(module, name=plugin_name)
        origin[plugin_name] = (dist, version)

    for index, plugin in enumerate(extra_plugins):
        plugin_name = getattr(plugin, "__name__", f"extra-{index}")
        dist = getattr(plugin, "DISTRIBUTION", plugin_name)
        pm.register(plugin, name=f"{dist}:{plugin_name}")
        origin[f"{dist}:{plugin_name}"] = (dist, getattr(plugin, "__version__", ""))

    pm.check_pending()
    for kind in KINDS:
        _collect(registry, kind, origin)
    return registry


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "")
    return (dist.metadata["Name"] or "unknown", dist.version or "")


def _collect(registry: Registry, kind: Kind, origin: dict[str, tuple[str, str]]) -> None:
    hook = getattr(registry.pm.hook, _HOOK_OF_KIND[kind])
    table = registry.components[kind]
    for impl in hook.get_hookimpls():
        dist, version = origin.get(impl.plugin_name, (impl.plugin_name, ""))
        short = impl.plugin_name.split(":", 1)[-1]
        try:
            specs = list(impl.function() or [])
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            registry.failed.append(FailedPlugin(short, dist, version, error, kind))
            log.warning("plugin_registration_failed", plugin=short, kind=kind, error=error)
            continue
        for spec in specs:
            if getattr(spec, "kind", None) != kind:
                error = f"{_HOOK_OF_KIND[kind]} returned {type(spec).__name__}, expected a {kind} spec"
                registry.failed.append(FailedPlugin(short, dist, version, error, kind))
                continue
            if spec.name in registry.disabled:
                continue
            spec = replace(spec, distribution=dist, version=version)
            previous = table.get(spec.name)
            if previous is not None and previous.distribution != dist:
                registry.clashes.setdefault((kind, spec.name), [previous.distribution]).append(dist)
                registry.failed.append(
                    FailedPlugin(
                        spec.name,
                        dist,
                        version,
                        f"{kind} name {spec.name!r} is also provided by {previous.distribution}",
                        kind,
                    )
                )
                continue
            table[spec.name] = spec
