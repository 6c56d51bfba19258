"""The contract kit catches a sink that drops data: sinks broken on purpose (one drops a file, one drops
points of a series, one drops a parameter, one makes a point up) fail `SinkContract`, and the same sink
unbroken passes it. The suites run in a pytest subprocess, as a plugin author's test module would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE = textwrap.dedent('''
    import pyarrow as pa
    import pyarrow.compute as pc
    import pytest
    from migrate_core.testing import MemorySink, ReadBack, SinkContract

    VALUES = ("float_value", "int_value", "string_value", "bool_value")


    class Broken(MemorySink):
        """Loads like MemorySink, then loses something, as a buggy sink would, without reporting it."""

        def damage(self, run):
            pass

        def load_run(self, reader, ctx):
            super().load_run(reader, ctx)
            self.damage(self.loaded[(reader.project_id, reader.run_id)])


    class DropsFile(Broken):
        def damage(self, run):
            run["files"].clear()


    class DropsRows(Broken):
        def damage(self, run):
            table = run["table"]
            loss = pc.equal(table["attribute_path"], "metrics/loss")
            keep = pc.or_(pc.invert(loss), pc.less(table["step"].cast(pa.float64()), 10))
            run["table"] = table.filter(keep)


    class DropsParam(Broken):
        def damage(self, run):
            run["table"] = run["table"].filter(pc.not_equal(run["table"]["attribute_path"], "params/lr"))


    class MakesUpAPoint(Broken):
        def damage(self, run):
            table = run["table"]
            run["table"] = pa.concat_tables([table, table.slice(table.num_rows - 1)])


    class Base(SinkContract):
        sink_class = MemorySink

        @pytest.fixture
        def sink(self):
            return self.sink_class()

        def sink_state(self, sink, project_id, run_id):
            run = sink.loaded.get((project_id, run_id))
            return None if run is None else (run["table"].to_pylist(), run["files"])

        def read_back(self, sink, project_id, run_id):
            run = sink.loaded.get((project_id, run_id))
            if run is None:
                return None
            rows, files = [], []
            for row in run["table"].to_pylist():
                path = (row["file_value"] or {}).get("path")
                if path is not None:
                    if path in run["files"]:
                        files.append((row["attribute_path"], run["files"][path]))
                    continue
                value = next(row[c] for c in VALUES if row[c] is not None)
                rows.append((row["attribute_path"], row["step"], value))
            return ReadBack(rows, files)


    class TestGood(Base):
        sink_class = MemorySink


    class TestDropsFile(Base):
        sink_class = DropsFile


    class TestDropsRows(Base):
        sink_class = DropsRows


    class TestDropsParam(Base):
        sink_class = DropsParam


    class TestMakesUpAPoint(Base):
        sink_class = MakesUpAPoint
''')


def test_the_kit_fails_sinks_that_lose_data(tmp_path: Path):
    (tmp_path / "test_broken_sinks.py").write_text(MODULE)
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    "-c", "/dev/null", f"--junitxml={report}", str(tmp_path / "test_broken_sinks.py")],
                   cwd=tmp_path, capture_output=True, text=True, timeout=120)
    outcome: dict[tuple[str, str], str] = {}
    for case in ET.parse(report).iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        outcome[(case.get("classname").rsplit(".", 1)[-1], case.get("name"))] = (
            "passed" if failure is None else failure.get("message", "failed"))
    check = "test_every_value_and_file_arrives"
    assert {name for (cls, name) in outcome if cls == "TestGood"} >= {check, "test_loads_a_run"}
    assert all(result == "passed" for (cls, _), result in outcome.items() if cls == "TestGood"), outcome
    for cls, says in [("TestDropsFile", "1 files missing"), ("TestDropsRows", "values missing"),
                      ("TestDropsParam", "1 values missing"), ("TestMakesUpAPoint", "that the run does not hold")]:
        assert says in outcome[(cls, check)], (cls, outcome[(cls, check)])
