"""A neptune-exporter dump (no manifest) loads and verifies: 3.x and 2.x layouts, file sets, artifacts."""

from __future__ import annotations

from tests.fakes.pluto import FakePluto
from tests.plugins.local_fs import exporter_dump

FAST = ["--set", "sink.pluto.retries=1", "--set", "sink.pluto.backoff=0.01"]


def test_exporter_dump_loads_and_verifies(migrate, fake_pluto: FakePluto, tmp_path):
    dump = exporter_dump.build(tmp_path / "dump")
    paths = ["--data-path", str(dump["data"]), "--files-path", str(dump["files"])]
    result = migrate("load", "--sink", "pluto", *paths, *FAST, "--json")
    assert result.code == 0, result.out + result.err
    summary = result.json()
    status = {r["run_id"]: r for r in summary["runs"]}
    assert status["run-a"]["status"] == status["SAN-1"]["status"] == "ok"
    assert status["SAN-2"]["status"] == "skipped"  # interrupted export
    assert status["run-a"]["losses"] == {"fork links to a parent run that is not in Pluto (kept in config)": 1}
    project = "my-org-my-project"
    run_a = fake_pluto.run_by_external(project, "neptune:my-org/my-project:run-a")
    assert run_a.name == "exp a" and run_a.config["sys"]["forking"]["parent"] == "run-root"
    assert "only_in_other_run" not in run_a.config["cfg"]  # the 3.x melt's absent rows stay absent
    assert sorted(run_a.metric("train/loss")) == [25, 30]  # steps 2.5 and 3.0 at scale 10
    san = fake_pluto.run_by_external(project, "neptune:my-org/my-project:SAN-1")
    files = sorted((f.log_name, f.file_name, f.content) for f in san.files)
    assert files == [
        ("dataset", "files_list.json", dump["file_bytes"]["my-org/my-project/SAN-1/dataset/files_list.json"]),
        ("model/weights", "weights", b"W" * 100),
        ("samples", "0.png", b"PNG0"),
        ("samples", "1.png", b"PNG1"),
        ("source_code/files", "README.md", b"# readme\n"),
        ("source_code/files", "src%2Ftrain.py", b"print('hi')\n"),
    ]
    verified = migrate("verify", "--sink", "pluto", *paths, *FAST, "--json")
    assert verified.code == 0, verified.out
    assert {r["run_id"] for r in verified.json()["runs"]} == {"run-a", "SAN-1"}
