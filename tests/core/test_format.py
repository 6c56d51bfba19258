import json
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.format import (
    ENCODED_SCHEMA,
    IDENTITY_TYPE,
    SCHEMA,
    conform,
    drop_absent,
    encoded,
    make_batch,
    plain,
    sanitize_path_part,
    schema_problems,
    step_units,
    steps_from_float,
    steps_from_units,
)

REFERENCE_SCHEMA = """project_id: string
run_id: string
attribute_path: string
attribute_type: string
step: decimal128(18, 6)
timestamp: timestamp[ms, tz=UTC]
int_value: int64
float_value: double
string_value: string
bool_value: bool
datetime_value: timestamp[ms, tz=UTC]
string_set_value: list<item: string>
file_value: struct<path: string>
histogram_value: struct<type: string, edges: list<item: double>, values: list<item: double>>"""


def test_schema_is_exactly_the_exporters():
    printed = SCHEMA.to_string(show_schema_metadata=False, show_field_metadata=False)
    top_level = [line for line in printed.splitlines() if not line.startswith(" ")]
    assert "\n".join(top_level) == REFERENCE_SCHEMA


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("my-org/my-project", "my-org_my-project-de40b447a2778f2b"),
        ("SAN-1", "SAN-1-9f64a122e3f44eb4"),
        ("ws/proj", "ws_proj-00871eb7ac1bdb01"),
        ("PROJ-1", "PROJ-1-cae2b9fa0a012497"),
        ("run-a", "run-a-8a4618099434c5a0"),
        ("Ünï/ç o", "Ünï_ç_o-5688e2f65d5b0746"),
    ],
)
def test_sanitize_matches_reference_names(original, expected):
    assert sanitize_path_part(original) == expected


def test_decimal_steps_are_exact_and_signed():
    units = np.array([0, 1, -1, 1_500_000, -2_250_000, 999_999_999_999_999_999], dtype=np.int64)
    arr = steps_from_units(units)
    assert arr.type == pa.decimal128(18, 6)
    assert arr.to_pylist() == [Decimal(u).scaleb(-6) for u in units.tolist()]
    assert step_units(arr).tolist() == units.tolist()
    assert step_units(arr.slice(2, 3)).tolist() == units[2:5].tolist()


def test_float_steps_round_to_six_places():
    assert steps_from_float([0.1, 2.5, -3.0000004]).to_pylist() == [
        Decimal("0.100000"), Decimal("2.500000"), Decimal("-3.000000")]
    with pytest.raises(ValueError, match="finite"):
        steps_from_float([float("nan")])
    with pytest.raises(ValueError, match="out of range"):
        steps_from_float([1e13])


def test_make_batch_fills_nulls_and_checks_lengths():
    batch = make_batch("p", "r", "a", "float", 2, float_value=[1.0, float("nan")])
    assert batch.schema.equals(ENCODED_SCHEMA)
    assert plain(batch).schema.equals(SCHEMA)
    assert plain(batch)["project_id"].to_pylist() == ["p", "p"]
    assert batch.column("int_value").null_count == 2
    with pytest.raises(ValueError, match="expected 3"):
        make_batch("p", "r", "a", "float", 3, float_value=[1.0])


def test_identity_columns_are_dictionary_encoded_whatever_comes_in():
    many = make_batch("p", "r", pa.array(["a", "b", "a"]), ["int", "int", None], 3, int_value=[1, 2, 3])
    assert many.schema.equals(ENCODED_SCHEMA)
    assert plain(many)["attribute_path"].to_pylist() == ["a", "b", "a"]
    assert plain(many)["attribute_type"].to_pylist() == ["int", "int", None]
    # one shared zero buffer serves every constant column, short and long
    big = make_batch("p", "r", "m", "float_series", 200_000, float_value=np.zeros(200_000))
    assert plain(big)["run_id"].unique().to_pylist() == ["r"]
    assert make_batch("p", "r", "m", "int", 0).num_rows == 0
    # encoded(): plain in -> dictionary out; other index widths -> int32; already encoded passes untouched
    table = plain(many)
    assert encoded(table).schema.equals(ENCODED_SCHEMA)
    assert plain(encoded(table)).equals(table)
    narrow = table.set_column(0, "project_id", table["project_id"].dictionary_encode().cast(
        pa.dictionary(pa.int8(), pa.string())))
    assert encoded(narrow).schema.field("project_id").type.equals(IDENTITY_TYPE)
    same = pa.Table.from_batches([many])
    assert encoded(same) is same
    with pytest.raises(ValueError, match="canonical schema"):
        encoded(table.drop_columns(["step"]))


def test_conform_names_every_schema_problem():
    bad = pa.table({"project_id": ["p"], "step": pa.array([1.0])})
    problems = schema_problems(bad.schema)
    assert "column 'step' is double, expected decimal128(18, 6)" in problems
    assert problems[-1].startswith("columns 'run_id', 'attribute_path'") and problems[-1].endswith("are missing")
    with pytest.raises(ValueError, match="canonical schema"):
        conform(bad)


def test_absent_parameter_rows_are_dropped_but_null_series_points_are_not():
    batch = make_batch("p", "r", pa.array(["cfg/a", "cfg/b", "m"]), pa.array(["float", "int", "float_series"]), 3,
                       float_value=[1.0, None, None], step=steps_from_units(np.array([0, 0, 1])))
    table, dropped = drop_absent(pa.Table.from_batches([batch]))
    assert dropped == 1
    assert table["attribute_path"].to_pylist() == ["cfg/a", "m"]


def test_manifest_stats_single_attribute_fast_path_equals_group_by():
    from migrate_core.manifest import AttributeStats

    k = np.arange(10, dtype=np.int64)
    values = np.linspace(0, 1, 10)
    values[0] = np.nan
    one = make_batch("p", "r", "m", "float_series", 10, step=steps_from_units(k * 250_000 - 1_000_000),
                     float_value=values)
    mixed = pa.Table.from_batches([one, make_batch("p", "r", "x", "int", 1, int_value=[7])])
    fast, slow = AttributeStats(), AttributeStats()
    fast.update(pa.Table.from_batches([one]))
    fast.update(pa.Table.from_batches([make_batch("p", "r", "x", "int", 1, int_value=[7])]))
    slow.update(mixed)
    assert fast.as_json() == slow.as_json()
    # the Python path for small mixed batches equals Arrow's group-by, nulls, NaN and repeated paths included
    import migrate_core.manifest as manifest_module

    rng = np.random.default_rng(3)
    paths = pa.array([f"p{int(i)}" for i in rng.integers(0, 6, 200)])
    kinds = pa.array(["float" if i % 7 else "int" for i in range(200)])
    floats = [None if i % 5 == 0 else (float("nan") if i % 11 == 0 else float(i)) for i in range(200)]
    ints = [None if i % 3 else i for i in range(200)]
    steps = steps_from_units(np.arange(200, dtype=np.int64) * 1000 - 50_000)
    steps = pa.array([None if i % 4 == 0 else v for i, v in enumerate(steps.to_pylist())], steps.type)
    mixed_small = pa.Table.from_batches([make_batch("p", "r", paths, kinds, 200, step=steps, float_value=floats,
                                                    int_value=ints)])
    small, big = AttributeStats(), AttributeStats()
    small.update(mixed_small)
    threshold = manifest_module.SMALL_TABLE_ROWS
    try:
        manifest_module.SMALL_TABLE_ROWS = 0  # force the group-by
        big.update(mixed_small)
    finally:
        manifest_module.SMALL_TABLE_ROWS = threshold
    assert json.dumps(small.as_json(), sort_keys=True) == json.dumps(big.as_json(), sort_keys=True)
    plain_in = AttributeStats()  # plain-string identity columns (another storage's batches) agree too
    plain_in.update(plain(pa.Table.from_batches([one])))
    plain_in.update(plain(pa.Table.from_batches([make_batch("p", "r", "x", "int", 1, int_value=[7])])))
    assert plain_in.as_json() == slow.as_json()
    assert fast.as_json()["m"]["step_min"] == "-1" and fast.as_json()["m"]["rows"] == 10
