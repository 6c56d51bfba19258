"""Build every package as PyPI would get it and check what came out.

For each of the six packages: `uv build` (sdist, then a wheel built from that sdist, so a file missing from
the sdist breaks the wheel too), `twine check --strict` on both, then the wheel's contents: its
entry_points.txt holds exactly the `migrate.plugins` entries (and scripts) of pyproject.toml, the LICENSE is
in its .dist-info, and nothing outside the import package and .dist-info is shipped (no tests/, caches,
.pyc). The sdist holds the package, README.md, LICENSE and pyproject.toml (and hatchling's copy of .gitignore), and no
caches.

    python .ci/check_dist.py [OUT_DIR]        # run with the workspace venv (twine is a dev dependency)
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "plugins/local_fs", "plugins/neptune2", "plugins/neptune3", "plugins/pluto",
            "examples/ndjson_sink"]
STRAY = ("__pycache__/", ".pyc", ".pytest_cache", ".ruff_cache", "tests/", ".egg-info")


def uv() -> list[str]:
    """`uv run` names its own binary in $UV; else the one on PATH, else the uv module of python3."""
    found = os.environ.get("UV") or shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def check_wheel(wheel: Path, project: dict, module: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str  # keep entry-point names as written
        entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
    got = {section: {k: v.strip() for k, v in entry_points[section].items()} for section in entry_points.sections()}
    want = {group: dict(entries) for group, entries in project.get("entry-points", {}).items()}
    if project.get("scripts"):
        want["console_scripts"] = dict(project["scripts"])
    if got != want:
        problems.append(f"entry points {got} != pyproject's {want}")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append("no LICENSE in the wheel's .dist-info/licenses")
    outside = [n for n in names if not n.startswith((f"{module}/", f"{dist_info}/"))]
    stray = [n for n in names if any(s in n for s in STRAY)]
    if outside or stray:
        problems.append(f"stray files: {sorted(set(outside + stray))}")
    if not any(n == f"{module}/__init__.py" for n in names):
        problems.append(f"{module}/__init__.py missing")
    return problems


def check_sdist(sdist: Path, module: str) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    # hatchling copies the repository's .gitignore in, so a wheel built from the sdist excludes the same files
    allowed = ("README.md", "LICENSE", "pyproject.toml", "PKG-INFO", ".gitignore", f"src/{module}/")
    unexpected = [n for n in names if not n.startswith(allowed) or any(s in n for s in STRAY)]
    missing = [n for n in ("README.md", "LICENSE", "pyproject.toml", f"src/{module}/__init__.py") if n not in names]
    return ([f"unexpected files: {unexpected}"] if unexpected else []) + (
        [f"missing: {missing}"] if missing else [])


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="migrate-dist-"))
    failures = 0
    for package in PACKAGES:
        source = ROOT / package
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
        module = next(p.name for p in (source / "src").iterdir() if (p / "__init__.py").exists())
        target = out / source.name
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([*uv(), "build", "--quiet", "--out-dir", str(target), str(source)], check=True)
        sdists, wheels = sorted(target.glob("*.tar.gz")), sorted(target.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            print(f"{project['name']}: expected one sdist and one wheel, got {sdists + wheels}")
            failures += 1
            continue
        twine = subprocess.run([sys.executable, "-m", "twine", "--no-color", "check", "--strict", str(sdists[0]), str(wheels[0])],
                               capture_output=True, text=True)
        problems = [] if twine.returncode == 0 else [f"twine check --strict: {twine.stdout.strip()}"]
        problems += check_wheel(wheels[0], project, module) + check_sdist(sdists[0], module)
        for problem in problems:
            print(f"{project['name']}: {problem}")
        failures += bool(problems)
        if not problems:
            print(f"{project['name']}: {sdists[0].name} + {wheels[0].name} ok (twine check --strict, contents)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
