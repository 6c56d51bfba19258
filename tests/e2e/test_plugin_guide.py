"""docs/writing-a-plugin.md is tried as written: its `<!-- file: ... -->` code blocks, taken verbatim, make a
package that installs next to migrate-ml and migrate-ml-local-fs in a fresh venv, carries every row and
file of a demo export through `migrate load --sink csv`, and passes its own contract test."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)\n```", re.S)


def files_of_the_guide() -> dict[str, str]:
    return {m["path"]: m["body"] + "\n" for m in BLOCK.finditer(GUIDE.read_text())}


def test_the_guide_holds_a_whole_package():
    assert set(files_of_the_guide()) == {"pyproject.toml", "src/migrate_csv_sink/__init__.py",
                                         "tests/test_contract.py"}


def _venv(tmp_path: Path, package: Path) -> Path:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required for this test (the README's setup installs it)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    base = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    # what the guide's step 0 and step 4 install, from this checkout
    packages = [f"{ROOT / 'core'}[testing]", str(ROOT / "plugins" / "local_fs"), f"{package}[test]"]
    if subprocess.run([*base, "--offline", *packages], capture_output=True).returncode != 0:
        subprocess.run([*base, *packages], check=True)  # a cold cache: fall back to the package index
    return venv


@pytest.mark.slow
def test_the_csv_sink_written_from_the_guide_works(tmp_path):
    package = tmp_path / "migrate-csv-sink"
    for rel, body in files_of_the_guide().items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(body)
    venv = _venv(tmp_path, package)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE", "VIRTUAL_ENV"))}

    def migrate(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(venv / "bin" / "migrate"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"migrate {' '.join(args)}: {done.stderr}"
        return done

    sinks = {s["name"]: s for s in json.loads(migrate("plugins", "list", "--json").stdout)["sinks"]}
    assert sinks["csv"]["distribution"] == "migrate-csv-sink"
    migrate("export", "--source", "demo", "--set", "source.demo.points_per_series=200")
    load = json.loads(migrate("load", "--sink", "csv", "--json").stdout)
    assert load["stages"]["load"]["ok"] == 3 and load["losses"] == {}

    manifests = sorted((work / "exports" / "data").rglob("*.manifest.json"))
    assert len(manifests) == 3
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        project_dir = next((work / "csv").iterdir())
        (csv_path,) = [p for p in project_dir.glob("*.csv") if p.stem == manifest_path.name[:-len(".manifest.json")]]
        with csv_path.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.DictReader(handle))
        assert len(lines) == manifest["rows"], csv_path
        per_attribute = {}
        for line in lines:
            per_attribute[line["attribute_path"]] = per_attribute.get(line["attribute_path"], 0) + 1
        assert per_attribute == {path: a["rows"] for path, a in manifest["attributes"].items()}
        copied = {line["file"]: csv_path.with_suffix(".files") / line["file"] for line in lines if line["file"]}
        assert {f["path"] for f in manifest["files"]} == set(copied)
        for f in manifest["files"]:
            assert hashlib.sha256(copied[f["path"]].read_bytes()).hexdigest() == f["sha256"]

    kit = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/"], cwd=package, env=env, capture_output=True, text=True, timeout=300)
    assert kit.returncode == 0, kit.stdout[-3000:]
    assert "passed" in kit.stdout and "failed" not in kit.stdout
