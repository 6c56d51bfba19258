"""The model registry: models and every version of the selected models, into their own storage root."""

from __future__ import annotations

import pytest
from migrate_local_fs.storage import LocalFsStorage

from tests.fakes.neptune2 import FakeNeptune2Server, File
from tests.plugins.neptune2.conftest import FAST_SET

pytestmark = pytest.mark.timeout(60)


def test_models_and_their_versions_go_to_their_own_root(migrate, fake_neptune2: FakeNeptune2Server, tmp_path):
    srv = fake_neptune2
    srv.add_project("ws/proj")
    srv.add_run("ws/proj", attrs={"params/lr": 0.1})
    cls = srv.add_model("ws/proj", "CLS", attrs={"info/size": 3}, files={"weights": File(b"w", name="w", ext="pt")})
    det = srv.add_model("ws/proj", "DET", attrs={"info/size": 5})
    srv.add_model_version(cls, attrs={"val/acc": 0.9}, stage="production")
    srv.add_model_version(cls, attrs={"val/acc": 0.95})
    srv.add_model_version(det, attrs={"val/acc": 0.5})
    result = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET,
                     "--set", "source.neptune2.objects=models", "--set", "source.neptune2.query=`info/size`:int < 4",
                     "--data-path", "model_data", "--files-path", "model_files", "--json")
    assert result.code == 0, result.err
    assert sorted(r["run_id"] for r in result.json()["runs"]) == ["PROJ-CLS", "PROJ-CLS-1", "PROJ-CLS-2"]
    storage = LocalFsStorage(tmp_path / "model_data", tmp_path / "model_files")
    stored = {r.run_id: r for r in storage.list_runs()}
    version = next(storage.read(stored["PROJ-CLS-1"])).to_pylist()
    values = {row["attribute_path"]: row for row in version}
    assert values["val/acc"]["float_value"] == 0.9 and values["sys/stage"]["string_value"] == "production"
    assert values["sys/model_id"]["string_value"] == "PROJ-CLS"
    model_rows = [row for batch in storage.read(stored["PROJ-CLS"]) for row in batch.to_pylist()]
    weights = next(row for row in model_rows if row["attribute_path"] == "weights")
    with storage.open_file(stored["PROJ-CLS"], weights["file_value"]["path"]) as handle:
        assert handle.read() == b"w"
    assert not (tmp_path / "exports").exists()  # runs' default root untouched
