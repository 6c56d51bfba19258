"""The same neptune3 tests under another neptune-query (e.g. 1.7.0, the version neptune-exporter locks).

Runs when NEPTUNE3_COMPAT_PYTHON names an interpreter whose environment has that neptune-query plus
migrate-ml, migrate-ml-local-fs and migrate-ml-neptune3 (editable) and pytest; docs/neptune3.md shows how to make
one. The golden end-to-end tests need neptune-scale and skip there; the builder-data tests cover the reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not os.environ.get("NEPTUNE3_COMPAT_PYTHON"),
                    reason="set NEPTUNE3_COMPAT_PYTHON to an interpreter with another neptune-query (e.g. 1.7.0)")
@pytest.mark.timeout(240)
def test_neptune3_suite_with_another_neptune_query() -> None:
    python = os.environ["NEPTUNE3_COMPAT_PYTHON"]
    version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('neptune-query'))"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NEPTUNE3_COMPAT_PYTHON")
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/plugins/neptune3",
         "--deselect", "tests/plugins/neptune3/test_compat.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=230,
    )
    assert done.returncode == 0, f"neptune-query {version}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout
