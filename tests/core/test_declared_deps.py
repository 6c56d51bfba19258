"""Every package declares each third-party library its source imports: a plugin installed alone (core + that
plugin, from the registry) must import, so an import that only works because another workspace member or the
dev group happened to install its library is a bug.

Imports are read with `ast` from every module of each package (inside functions too: heavy SDKs are imported
lazily, and they are still needed). Import names map to distributions through the installed metadata
(`importlib.metadata.packages_distributions()`); one distribution may satisfy an import for another (e.g.
`google.protobuf` comes from `protobuf`), which the metadata says, not a table here."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "core", *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imports_of(source_dir: Path, extras: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Top-level module name -> the files that import it (absolute imports only). A subpackage named like an
    optional extra (`migrate_core/testing/` and the `testing` extra) is left out: it is scanned on its own."""
    found: dict[str, list[str]] = {}
    for path in sorted(source_dir.rglob("*.py")):
        if extras & set(path.relative_to(source_dir).parts[1:-1]):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def workspace_modules() -> dict[str, str]:
    """Import name -> distribution name of every workspace member (editable installs carry no top-level map)."""
    out = {}
    for package in PACKAGES:
        project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        for module in (package / "src").iterdir():
            if (module / "__init__.py").exists():
                out[module.name] = normalize(project["name"])
    return out


def scopes(package: Path) -> list[tuple[str, Path, frozenset[str], set[str]]]:
    """(name, source dir, extras to leave out, declared distributions): the package without its extras'
    subpackages under `dependencies`, and each extra's subpackage under `dependencies` + that extra."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    base = {normalize(Requirement(spec).name) for spec in project.get("dependencies", [])}
    extras = project.get("optional-dependencies", {})
    out = [(package.name, package / "src", frozenset(extras), base)]
    for extra, specs in extras.items():
        for sub in (package / "src").glob(f"*/{extra}"):
            out.append((f"{package.name}[{extra}]", sub, frozenset(),
                        base | {normalize(Requirement(spec).name) for spec in specs}))
    return out


SCOPES = [scope for package in PACKAGES for scope in scopes(package)]


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: s[0])
def test_every_third_party_import_is_declared(scope):
    name, source, extras, declared = scope
    package = next(p for p in PACKAGES if source.is_relative_to(p))
    own = normalize(tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"])
    distributions = {name: {normalize(d) for d in dists} for name, dists in packages_distributions().items()}
    distributions.update({name: {dist} for name, dist in workspace_modules().items()})
    missing = []
    for module, files in sorted(imports_of(source, extras).items()):
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        owners = distributions.get(module)
        assert owners, f"{files[0]} imports {module!r}, which no installed distribution provides"
        if own not in owners and not owners & declared:
            missing.append(f"{module} (from {', '.join(sorted(owners))}; imported in {files[0]})")
    assert not missing, f"{name}: pyproject.toml does not declare: " + "; ".join(missing)


def test_the_scan_sees_lazy_imports():
    """The scan reads imports inside functions too (the neptune SDKs are imported in factories)."""
    found = imports_of(ROOT / "plugins" / "neptune2" / "src")
    assert "neptune" in found and "requests" in found
