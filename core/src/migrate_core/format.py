"""The canonical row format: the neptune-exporter parquet schema, exactly.

Keeping the schema byte-for-byte equal to neptune-exporter's means every existing dump loads and every
dump we write loads in their tool too (docs/format.md). One long table, one row per (attribute, point),
one typed value column per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STEP_TYPE = pa.decimal128(18, 6)
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
FILE_TYPE = pa.struct([pa.field("path", pa.string())])
HISTOGRAM_TYPE = pa.struct(
    [
        pa.field("type", pa.string()),
        pa.field("edges", pa.list_(pa.float64())),
        pa.field("values", pa.list_(pa.float64())),
    ]
)

SCHEMA = pa.schema(
    [
        pa.field("project_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("attribute_path", pa.string()),
        pa.field("attribute_type", pa.string()),
        pa.field("step", STEP_TYPE),
        pa.field("timestamp", TIMESTAMP_TYPE),
        pa.field("int_value", pa.int64()),
        pa.field("float_value", pa.float64()),
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("datetime_value", TIMESTAMP_TYPE),
        pa.field("string_set_value", pa.list_(pa.string())),
        pa.field("file_value", FILE_TYPE),
        pa.field("histogram_value", HISTOGRAM_TYPE),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)

# attribute_type -> the value column that carries it (exporter-format.md section 3.1).
VALUE_COLUMN: dict[str, str] = {
    "float": "float_value",
    "int": "int_value",
    "string": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
    "float_series": "float_value",
    "string_series": "string_value",
    "histogram_series": "histogram_value",
    "file": "file_value",
    "file_series": "file_value",
    "file_set": "file_value",
    "artifact": "file_value",
}
ATTRIBUTE_TYPES: tuple[str, ...] = tuple(VALUE_COLUMN)
PARAMETER_TYPES = frozenset({"float", "int", "string", "bool", "datetime", "string_set"})
SERIES_TYPES = frozenset({"float_series", "string_series", "histogram_series", "file_series"})
FILE_TYPES = frozenset({"file", "file_series", "file_set", "artifact"})
VALUE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(VALUE_COLUMN.values()))

# Columns that repeat one value over long stretches: written and read dictionary-encoded, which is what
# makes reads ~3x faster. Batches from a storage may carry them as dictionary<int32, string>; they are
# logically the canonical schema (`plain()` converts when a consumer needs plain strings).
IDENTITY_COLUMNS: tuple[str, ...] = ("project_id", "run_id", "attribute_path", "attribute_type")
IDENTITY_TYPE = pa.dictionary(pa.int32(), pa.string())
# The canonical schema with identity columns dictionary-encoded: what `make_batch` builds and local_fs writes
# (its parquet files still say plain strings, see docs/format.md).
ENCODED_SCHEMA = pa.schema(
    [pa.field(f.name, IDENTITY_TYPE) if f.name in IDENTITY_COLUMNS else f for f in SCHEMA]
)

STEP_SCALE = 10**6
STEP_LIMIT = Decimal("999999999999.999999")
_UNIT_LIMIT = int(STEP_LIMIT * STEP_SCALE)


def sanitize_path_part(value: str) -> str:
    """Return neptune-exporter's file-system name for a project or run id.

    Keeps Unicode alphanumerics, `_` and `-`, replaces every other character with `_`, then appends `-` and
    the 16-hex blake2b digest of the original, so distinct ids never collide and the name is not reversible
    (identities always come from the columns, never from file names).
    """
    kept = "".join(ch if (ch.isalnum() or ch in "_-") else "_" for ch in value)
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).hexdigest()
    return f"{kept}-{digest}"


def schema_problems(schema: pa.Schema) -> list[str]:
    """Every way `schema` differs from the canonical one, as readable sentences (empty when equal)."""
    problems = []
    names = schema.names
    for field in SCHEMA:
        if field.name in names:
            actual = schema.field(field.name).type
            if pa.types.is_dictionary(actual) and field.name in IDENTITY_COLUMNS:
                actual = actual.value_type
            if not actual.equals(field.type):
                problems.append(f"column {field.name!r} is {actual}, expected {field.type}")
    missing = [name for name in SCHEMA.names if name not in names]
    if missing:
        problems.append(("column " if len(missing) == 1 else "columns ") + ", ".join(map(repr, missing))
                        + (" is" if len(missing) == 1 else " are") + " missing")
    extra = [name for name in names if name not in SCHEMA.names]
    if extra:
        problems.append("unexpected columns " + ", ".join(map(repr, extra)))
    return problems


def steps_from_float(values: np.ndarray | Sequence[float]) -> pa.Array:
    """Float steps -> decimal128(18, 6), rounded to 6 places like the exporter, without a Python loop."""
    arr = np.asarray(values, dtype=np.float64)
    units = arr * STEP_SCALE
    np.rint(units, out=units)
    # one pass proves every step finite and in range (NaN fails the comparison too)
    if units.size and not np.abs(units).max() <= _UNIT_LIMIT:
        if not np.all(np.isfinite(arr)):
            raise ValueError("steps must be finite numbers")
        raise ValueError(f"step out of range (|step| must be <= {STEP_LIMIT})")
    return _decimal_steps(units.astype(np.int64))


def steps_from_units(units: np.ndarray) -> pa.Array:
    """int64 millionths of a step -> decimal128(18, 6), built straight from the 128-bit buffer."""
    units = np.ascontiguousarray(units, dtype=np.int64)
    if units.size and np.abs(units).max() > _UNIT_LIMIT:
        raise ValueError(f"step out of range (|step| must be <= {STEP_LIMIT})")
    return _decimal_steps(units)


def _decimal_steps(units: np.ndarray) -> pa.Array:
    wide = np.empty((units.size, 2), dtype=np.int64)
    wide[:, 0] = units
    np.right_shift(units, 63, out=wide[:, 1])  # the high word: all ones for negatives, else zero
    return pa.Array.from_buffers(STEP_TYPE, units.size, [None, pa.py_buffer(wide)])


def step_units(steps: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """decimal128(18, 6) -> int64 millionths (exact); nulls become 0, callers mask them separately."""
    if isinstance(steps, pa.ChunkedArray):
        steps = steps.combine_chunks() if steps.num_chunks != 1 else steps.chunk(0)
    filled = steps.fill_null(Decimal(0)) if steps.null_count else steps
    raw = np.frombuffer(filled.buffers()[1], dtype=np.int64)
    start = filled.offset * 2
    return raw[start : start + 2 * len(filled) : 2].copy()


def timestamps_ms(values: np.ndarray | Sequence[int]) -> pa.Array:
    """Epoch milliseconds (int64) -> timestamp[ms, UTC]."""
    return pa.array(np.asarray(values, dtype=np.int64), type=pa.int64()).cast(TIMESTAMP_TYPE)


def make_batch(
    project_id: str,
    run_id: str,
    attribute_path: str | pa.Array,
    attribute_type: str | pa.Array,
    length: int,
    **columns: pa.Array | Sequence | None,
) -> pa.RecordBatch:
    """Build a canonical record batch (ENCODED_SCHEMA); absent columns are null.

    Identity columns come out dictionary-encoded: a constant string costs one dictionary entry and a shared
    buffer of zero indices, never `length` copies of the string. `columns` maps canonical column names (step,
    timestamp, float_value, ...) to arrays of `length` values; anything not given is all-null, as the exporter
    writes it.
    """
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown columns: {sorted(unknown)}")
    identity = (project_id, run_id, attribute_path, attribute_type)
    arrays = [_identity(value, length) for value in identity]
    arrays += [_column(columns.get(field.name), field.type, length) for field in SCHEMA if field.name not in IDENTITY_COLUMNS]
    return pa.RecordBatch.from_arrays(arrays, schema=ENCODED_SCHEMA)


_zeros = pa.py_buffer(b"")


def _zero_indices(length: int) -> pa.Array:
    """int32 zeros of `length`, sliced from one shared, read-only buffer (grown on demand)."""
    global _zeros
    if _zeros.size < 4 * length:
        _zeros = pa.py_buffer(np.zeros(max(length, 1 << 16), dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.int32(), length, [None, _zeros])


def _identity(value: object, length: int) -> pa.Array:
    if isinstance(value, str):
        # safe=False: zero indices into a one-entry dictionary need no bounds check over `length` rows
        return pa.DictionaryArray.from_arrays(_zero_indices(length), pa.array([value], pa.string()), safe=False)
    if value is None:
        return pa.nulls(length, IDENTITY_TYPE)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    arr = value if isinstance(value, pa.Array) else pa.array(value, type=pa.string())
    if len(arr) != length:
        raise ValueError(f"column has {len(arr)} values, expected {length}")
    return _as_identity(arr)


def _as_identity(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A string or dictionary column as dictionary<int32, string> (encoded once; already-encoded kept)."""
    if arr.type.equals(IDENTITY_TYPE):
        return arr
    if pa.types.is_dictionary(arr.type):
        return arr.cast(IDENTITY_TYPE)
    if not arr.type.equals(pa.string()):
        arr = arr.cast(pa.string())
    return pc.dictionary_encode(arr)


def _column(value: object, type_: pa.DataType, length: int) -> pa.Array:
    if value is None:
        return pa.nulls(length, type_)
    if isinstance(value, str):
        return pa.repeat(pa.scalar(value, type_), length)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    arr = value if isinstance(value, pa.Array) else pa.array(value, type=type_)
    if not arr.type.equals(type_):
        arr = arr.cast(type_)
    if len(arr) != length:
        raise ValueError(f"column has {len(arr)} values, expected {length}")
    return arr


def plain(data: pa.RecordBatch | pa.Table) -> pa.Table:
    """Cast dictionary-encoded identity columns back to plain strings (same values, canonical types)."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    target = pa.schema([SCHEMA.field(name) for name in table.column_names])
    return table if table.schema.equals(target) else table.cast(target)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def conform(data: pa.RecordBatch | pa.Table) -> pa.Table:
    """Check a batch or table against the canonical schema (casting nothing silently); plain strings out."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if not table.schema.equals(SCHEMA, check_metadata=False):
        problems = schema_problems(table.schema)
        if problems:
            raise ValueError("batch does not match the canonical schema: " + "; ".join(problems))
        table = table.select(list(COLUMNS)).cast(SCHEMA)  # dictionary identity columns become plain
    return table.replace_schema_metadata(None)


def encoded(data: pa.RecordBatch | pa.Table) -> pa.Table:
    """Like `conform`, but identity columns come out as dictionary<int32, string> (ENCODED_SCHEMA): what a
    storage writes without hashing the same strings again. Already-encoded input passes through untouched."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if table.schema.equals(ENCODED_SCHEMA, check_metadata=False):
        return table.replace_schema_metadata(None) if table.schema.metadata else table
    problems = schema_problems(table.schema)
    if problems:
        raise ValueError("batch does not match the canonical schema: " + "; ".join(problems))
    columns = []
    for field in ENCODED_SCHEMA:
        column = table.column(field.name)
        if field.name in IDENTITY_COLUMNS:
            columns.append(_as_identity(column))
        else:
            columns.append(column if column.type.equals(field.type) else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=ENCODED_SCHEMA)


def absent_mask(table: pa.Table | pa.RecordBatch) -> pa.Array:
    """Rows that carry no value at all: parameter rows the 3.x exporter emits for missing attributes."""
    all_null = None
    for name in VALUE_COLUMNS:
        is_null = pc.is_null(table.column(name))
        all_null = is_null if all_null is None else pc.and_(all_null, is_null)
    is_param = pc.is_in(table.column("attribute_type"), pa.array(sorted(PARAMETER_TYPES)))
    return pc.and_(pc.fill_null(is_param, False), all_null)


def drop_absent(table: pa.Table) -> tuple[pa.Table, int]:
    """Remove value-less parameter rows (they mean "absent", not "null"); return the table and count."""
    mask = absent_mask(table)
    dropped = pc.sum(mask).as_py() or 0
    if not dropped:
        return table, 0
    return table.filter(pc.invert(mask)), dropped


def attribute_types_in(values: Iterable[str]) -> list[str]:
    """Unknown attribute types in `values` (used to name what a reader cannot interpret)."""
    return sorted({v for v in values if v not in VALUE_COLUMN})
