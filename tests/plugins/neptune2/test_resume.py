"""Resume: a run that failed half-way is not complete and the next export finishes it; the plugin module
stays light (no `neptune` import) so `migrate --help` stays fast."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.plugins.neptune2.conftest import FAST_SET

pytestmark = pytest.mark.timeout(60)


def test_failed_run_is_finished_by_the_next_export(migrate, declared, fake_neptune2, tmp_path):
    fake_neptune2.faults.add("getImageSeriesValue", "5xx", times=None)  # PROJ-1 breaks after its series
    first = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET,
                    "--set", "source.neptune2.retry_budget=0.3", "--json")
    assert first.code == 1
    status = {r["run_id"]: r["status"] for r in first.json()["runs"]}
    assert status == {"PROJ-1": "failed", "PROJ-2": "ok"}
    inspect = {r["run_id"]: r["complete"] for r in migrate("inspect", "--json").json()}
    assert inspect.get("PROJ-1") in (None, False) and inspect["PROJ-2"] is True

    fake_neptune2.faults.clear()
    second = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET, "--json")
    assert second.code == 0, second.err
    status = {r["run_id"]: r["status"] for r in second.json()["runs"]}
    assert status == {"PROJ-1": "ok", "PROJ-2": "skipped"}
    runs = {r["run_id"]: r for r in migrate("inspect", "--json").json()}
    assert runs["PROJ-1"]["complete"] and runs["PROJ-1"]["rows_by_type"]["file_series"] == 2


def test_plugin_module_does_not_import_neptune():
    code = "import sys, migrate_neptune2; migrate_neptune2.migrate_register_sources(); " \
           "assert 'neptune' not in sys.modules and 'bravado' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cancel_stops_the_run_at_the_next_request(declared, fake_neptune2, tmp_path):
    from migrate_core.api import RunContext, RunReport, Selection
    from migrate_core.errors import Cancelled
    from migrate_core.testing import MemoryStorage

    from tests.plugins.neptune2.conftest import make_source

    source = make_source()
    run = next(r for r in source.list_runs(Selection()) if r.run_id == "PROJ-1")
    fake_neptune2.faults.add("getFloatSeriesValues", "slow", times=1, delay=0.3)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    writer = MemoryStorage(tmp_path).begin_run(run.project_id, run.run_id, {})
    with pytest.raises(Cancelled):
        source.export_run(run, Selection(), writer, RunContext(RunReport(), cancel))
    assert fake_neptune2.count("downloadAttribute") == 0 and fake_neptune2.count("getImageSeriesValue") == 0
    source.close()
