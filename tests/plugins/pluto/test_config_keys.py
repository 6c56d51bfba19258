"""Parameter paths whose keys collide with the ones the Pluto config uses itself (`_value`, `_migrate`,
`_migrate_file`): every value lands under its own key, in any row order, and `verify` agrees."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest
from migrate_core.api import RunContext, RunReader, RunReport
from migrate_core.testing import MemoryRun

from .helpers import load, make_sink, run_of
from .test_mapping import P, neptune_storage, params

BIG = "x" * 100
ROWS = [
    ("a", "int", "int_value", 1),
    ("a/_value", "int", "int_value", 2),
    ("a/__value", "int", "int_value", 3),
    ("a/b", "int", "int_value", 4),
    ("_value", "string", "string_value", "top"),
    ("_migrate/run_id", "string", "string_value", "not ours"),
    ("cfg/blob", "string", "string_value", BIG),
    ("cfg/blob/length", "int", "int_value", 7),
    ("cfg/blob/_migrate_file", "string", "string_value", "a real parameter"),
]


@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_parameters_named_like_our_config_keys_keep_their_values(fake_pluto, tmp_path, order):
    rows = ROWS if order == "forward" else ROWS[::-1]
    storage = neptune_storage(tmp_path, [MemoryRun(P, "R-1", pa.Table.from_batches([params("R-1", rows)]))])
    sink = make_sink(fake_pluto, max_config_string=50)
    report = load(sink, storage, P, "R-1")
    config = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").config
    assert config["a"] == {"_value": 1, "__value": 2, "___value": 3, "b": 4}
    assert config["__value"] == "top"
    assert config["__migrate"] == {"run_id": "not ours"}
    assert config["_migrate"]["run_id"] == "R-1"
    assert config["cfg"]["blob"] == {"_value": {"_migrate_file": "cfg/blob", "length": len(BIG)}, "length": 7,
                                     "__migrate_file": "a real parameter"}
    assert not report.losses
    verified = sink.verify_run(RunReader(storage, storage.get_run(P, "R-1")), RunContext(RunReport(), threading.Event()))
    assert verified.ok, verified.mismatches
