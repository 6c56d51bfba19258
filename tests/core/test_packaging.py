"""The six packages are ready for PyPI and agree with each other: one version, a core range every plugin
accepts, the same license and URLs, a README per package that stands alone on PyPI (no relative links),
classifiers PyPI accepts. Building them and `twine check` are .ci/check_dist.py's job (it needs the index)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "core", *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml")),
            ROOT / "examples" / "ndjson_sink"]
CORE = "migrate-ml"


def project(package: Path) -> dict:
    return tomllib.loads((package / "pyproject.toml").read_text())


def declared_version(package: Path) -> str:
    """The version the build reads: `__version__ = "..."` in the file `[tool.hatch.version]` names."""
    meta = project(package)
    assert meta["project"].get("dynamic") == ["version"] and "version" not in meta["project"], package.name
    source = package / meta["tool"]["hatch"]["version"]["path"]
    found = re.findall(r'^__version__ = "([^"]+)"$', source.read_text(), flags=re.M)
    assert len(found) == 1, f"{source}: exactly one literal __version__ line"
    return found[0]


def ultranormalized(name: str) -> str:
    """How PyPI compares a new name with existing ones (separators and case dropped, o/0, l/i/1 alike)."""
    name = re.sub(r"[-_.]+", "", name).lower()
    return name.replace("o", "0").replace("l", "1").replace("i", "1")


def test_the_six_packages_are_all_here():
    assert [p.relative_to(ROOT).as_posix() for p in PACKAGES] == [
        "core", "plugins/local_fs", "plugins/neptune2", "plugins/neptune3", "plugins/pluto", "examples/ndjson_sink"]


def test_names_are_distinct_and_not_the_taken_ones():
    names = [project(p)["project"]["name"] for p in PACKAGES]
    assert names[0] == CORE and all(n.startswith(CORE + "-") for n in names[1:]), names
    assert len({ultranormalized(n) for n in names}) == len(names)
    # taken on PyPI (`migrate`, `migratecore`): PyPI would refuse these as too similar
    assert not {ultranormalized(n) for n in names} & {ultranormalized("migrate"), ultranormalized("migrate-core")}


def test_one_version_and_every_plugin_accepts_the_core():
    versions = {p.name: declared_version(p) for p in PACKAGES}
    assert len(set(versions.values())) == 1, versions
    current = Version(versions["core"])
    next_minor = Version(f"{current.major}.{current.minor + 1}.0")
    for package in PACKAGES[1:]:
        reqs = [Requirement(r) for r in project(package)["project"]["dependencies"]]
        core = [r for r in reqs if r.name == CORE]
        assert len(core) == 1, f"{package.name} must depend on {CORE}"
        assert current in core[0].specifier, f"{package.name}: {core[0]} excludes {current}"
        assert next_minor not in core[0].specifier, f"{package.name}: {core[0]} has no upper bound below {next_minor}"


@pytest.mark.parametrize("package", PACKAGES[:5], ids=lambda p: p.name)
def test_installed_metadata_carries_the_declared_version(package):
    assert installed_version(project(package)["project"]["name"]) == declared_version(package)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_metadata_is_complete(package):
    meta = project(package)["project"]
    core_meta = project(PACKAGES[0])["project"]
    assert meta["description"].strip() and meta["keywords"] and meta["authors"]
    assert meta["requires-python"] == core_meta["requires-python"]
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    assert (package / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert meta["urls"] == core_meta["urls"] and {"Homepage", "Documentation", "Repository", "Issues"} <= set(meta["urls"])
    assert all(u.startswith("https://") for u in meta["urls"].values())
    unknown = [c for c in meta["classifiers"] if c not in KNOWN_CLASSIFIERS]
    assert not unknown, f"PyPI rejects unknown classifiers: {unknown}"
    # PEP 639: a license expression and a license classifier together are refused by PyPI
    assert not [c for c in meta["classifiers"] if c.startswith("License ::")]
    assert meta["entry-points"]["migrate.plugins"], "a migrate package registers at least one plugin module"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_readme_stands_alone_on_pypi(package):
    meta = project(package)["project"]
    assert meta["readme"] == "README.md"
    text = (package / "README.md").read_text()
    assert text.startswith(f"# {meta['name']}\n")
    assert f"pip install {CORE}" in text and meta["name"] in text.split("## Install", 1)[-1], "an install line"
    assert "```" in text or "\n    " in text, "a minimal example"
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert not relative, f"relative links break on PyPI: {relative}"
    assert any(link.startswith(meta["urls"]["Repository"]) for link in links), "a link to the main docs"
