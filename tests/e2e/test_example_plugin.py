"""A third-party plugin, installed the way a user would, runs end to end through the real CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _install_env(tmp_path: Path) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required for this test (the README's setup installs it)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = [str(ROOT / "core"), str(ROOT / "plugins" / "local_fs"), str(ROOT / "examples" / "ndjson_sink")]
    base = [uv, "pip", "install", "-q", "--python", str(python)]
    offline = subprocess.run([*base, "--offline", *packages], capture_output=True, text=True)
    if offline.returncode != 0:  # a cold cache: fall back to the package index
        subprocess.run([*base, *packages], check=True)
    return venv


@pytest.mark.slow
def test_out_of_tree_sink_installs_and_runs(tmp_path):
    venv = _install_env(tmp_path)
    migrate = str(venv / "bin" / "migrate")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE", "VIRTUAL_ENV"))}
    listed = subprocess.run([migrate, "plugins", "list", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    sinks = {s["name"]: s for s in json.loads(listed.stdout)["sinks"]}
    assert sinks["ndjson"]["distribution"] == "migrate-ml-ndjson-sink"
    run = subprocess.run(
        [migrate, "--log-format", "json", "run", "--source", "demo", "--sink", "ndjson",
         "--set", "source.demo.points_per_series=100", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["stages"]["load"]["ok"] == 3 and summary["losses"] == {}
    files = sorted((tmp_path / "ndjson").rglob("*.ndjson"))
    assert len(files) == 3
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert {r["attribute_type"] for r in rows} >= {"float_series", "histogram_series", "file"}
    assert any(p.name == "model.bin" for p in (tmp_path / "ndjson").rglob("*"))
    verify = subprocess.run([migrate, "verify", "--sink", "ndjson", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert all(r["ok"] for r in json.loads(verify.stdout)["runs"])
