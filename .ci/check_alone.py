"""Run inside a venv holding only migrate-ml (core) and one plugin: every module of the plugin imports, and
`migrate plugins list --json` lists the plugin and reports no plugin that failed to load."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

plugin, migrate = sys.argv[1], sys.argv[2]
name = f"migrate_{plugin}"
package = importlib.import_module(name)
modules = [info.name for info in pkgutil.walk_packages(package.__path__, f"{name}.")]
for module in modules:
    importlib.import_module(module)
listed = json.loads(subprocess.run([migrate, "plugins", "list", "--json"], check=True, capture_output=True,
                                   text=True, timeout=120).stdout)
names = {row["name"] for kind in ("sources", "storages", "sinks") for row in listed[kind]}
if plugin not in names or listed["failed"]:
    sys.exit(f"{plugin} alone: plugins list shows {sorted(names)}, failed: {listed['failed']}")
print(f"{plugin} alone: {len(modules) + 1} modules import, plugins list ok")
