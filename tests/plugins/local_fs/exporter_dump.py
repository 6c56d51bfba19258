"""Builds a dump laid out exactly as neptune-exporter writes it (exporter-format.md sections 1-5).

Written independently from the reference text: snappy parquet with the fixed schema and no metadata,
`S()` names, parts committed by rename, 3.x and 2.x file layouts, `artifact` and `file_set` rows, the 3.x
melt's all-null parameter rows, an interrupted run that only has `.tmp` parts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from migrate_core.format import SCHEMA
from migrate_core.format import sanitize_path_part as S

PROJECT = "my-org/my-project"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _rows(run_id: str, rows: list[dict]) -> pa.Table:
    full = []
    for row in rows:
        base = {name: None for name in SCHEMA.names}
        base.update(project_id=PROJECT, run_id=run_id)
        base.update(row)
        full.append(base)
    return pa.Table.from_pylist(full, schema=SCHEMA)


def _write_part(folder: Path, run_id: str, n: int, table: pa.Table, tmp: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{S(run_id)}_part_{n}.parquet{'.tmp' if tmp else ''}"
    with pq.ParquetWriter(path, SCHEMA, compression="snappy") as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return path


def build(root: Path) -> dict:
    """Write the dump under root/data and root/files; return what a reader must find."""
    data, files = root / "data", root / "files"
    project_dir = data / S(PROJECT)
    files_dir = files / S(PROJECT)

    # --- a 3.x run (custom run id), split over two parts, with the melt's null rows and a fork link
    run3 = "run-a"
    (files_dir / run3 / "files/config").mkdir(parents=True)
    (files_dir / run3 / "files/config/config.yaml").write_bytes(b"lr: 0.1\n")
    (files_dir / run3 / "images/preds").mkdir(parents=True)
    for step in (3, 7):
        (files_dir / run3 / f"images/preds/pred_{step}.png").write_bytes(b"\x89PNG" + bytes([step]))
    part0 = _rows(run3, [
        {"attribute_path": "sys/custom_run_id", "attribute_type": "string", "string_value": run3},
        {"attribute_path": "sys/name", "attribute_type": "string", "string_value": "exp a"},
        {"attribute_path": "sys/tags", "attribute_type": "string_set", "string_set_value": ["x", "y"]},
        {"attribute_path": "sys/creation_time", "attribute_type": "datetime", "datetime_value": T0},
        {"attribute_path": "sys/forking/parent", "attribute_type": "string", "string_value": "run-root"},
        {"attribute_path": "sys/forking/step", "attribute_type": "float", "float_value": 2.0},
        {"attribute_path": "cfg/only_in_other_run", "attribute_type": "float"},  # melt: absent, all null
        {"attribute_path": "cfg/lr", "attribute_type": "float", "float_value": 0.1},
        {"attribute_path": "train/loss", "attribute_type": "float_series", "step": Decimal("2.500000"),
         "timestamp": T0, "float_value": 0.5},
        {"attribute_path": "train/loss", "attribute_type": "float_series", "step": Decimal("3.000000"),
         "timestamp": T0, "float_value": float("nan")},
    ])
    part1 = _rows(run3, [
        {"attribute_path": "logs/stdout", "attribute_type": "string_series", "step": Decimal("0.000000"),
         "timestamp": T0, "string_value": "hello"},
        {"attribute_path": "weights", "attribute_type": "histogram_series", "step": Decimal("1.000000"),
         "timestamp": T0, "histogram_value": {"type": "COUNTING", "edges": [0.0, 1.0, 2.0], "values": [3.0, 4.0]}},
        {"attribute_path": "files/config", "attribute_type": "file",
         "file_value": {"path": f"{run3}/files/config/config.yaml"}},
        {"attribute_path": "images/preds", "attribute_type": "file_series", "step": Decimal("3.000000"),
         "timestamp": T0, "file_value": {"path": f"{run3}/images/preds/pred_3.png"}},
        {"attribute_path": "images/preds", "attribute_type": "file_series", "step": Decimal("7.000000"),
         "timestamp": T0, "file_value": {"path": f"{run3}/images/preds/pred_7.png"}},
    ])
    # commit order as the exporter does it: .tmp first, renamed in reverse, part_0 last
    tmp1 = _write_part(project_dir, run3, 1, part1, tmp=True)
    tmp0 = _write_part(project_dir, run3, 0, part0, tmp=True)
    tmp1.rename(tmp1.with_suffix(""))
    tmp0.rename(tmp0.with_suffix(""))

    # --- a 2.x run: raw-id file layout, file series by index, file set directory, artifact file list
    run2 = "SAN-1"
    raw = files_dir / "my-org" / "my-project" / run2
    (raw / "model").mkdir(parents=True)
    (raw / "model" / "weights").write_bytes(b"W" * 100)  # 2.x single file: name and extension lost
    (raw / "samples").mkdir()
    (raw / "samples" / "0.png").write_bytes(b"PNG0")
    (raw / "samples" / "1.png").write_bytes(b"PNG1")
    (raw / "source_code/files/src").mkdir(parents=True)
    (raw / "source_code/files/src/train.py").write_bytes(b"print('hi')\n")
    (raw / "source_code/files/README.md").write_bytes(b"# readme\n")
    (raw / "dataset").mkdir()
    (raw / "dataset" / "files_list.json").write_text(json.dumps(
        [{"filePath": "s3://bucket/data.csv", "fileHash": "abc", "type": "S3", "metadata": {}}]))
    prefix = f"my-org/my-project/{run2}"
    table2 = _rows(run2, [
        {"attribute_path": "sys/id", "attribute_type": "string", "string_value": run2},
        {"attribute_path": "params/epochs", "attribute_type": "int", "int_value": 10},
        {"attribute_path": "params/amp", "attribute_type": "bool", "bool_value": True},
        {"attribute_path": "acc", "attribute_type": "float_series", "step": Decimal("0.000000"),
         "timestamp": T0, "float_value": 0.25},
        {"attribute_path": "model/weights", "attribute_type": "file", "file_value": {"path": f"{prefix}/model/weights"}},
        {"attribute_path": "samples", "attribute_type": "file_series", "step": Decimal("0.000000"),
         "file_value": {"path": f"{prefix}/samples/0.png"}},
        {"attribute_path": "samples", "attribute_type": "file_series", "step": Decimal("1.000000"),
         "file_value": {"path": f"{prefix}/samples/1.png"}},
        {"attribute_path": "source_code/files", "attribute_type": "file_set",
         "file_value": {"path": f"{prefix}/source_code/files"}},
        {"attribute_path": "dataset", "attribute_type": "artifact",
         "file_value": {"path": f"{prefix}/dataset/files_list.json"}},
    ])
    _write_part(project_dir, run2, 0, table2)

    # --- an interrupted run: only .tmp parts, as a crash leaves them
    _write_part(project_dir, "SAN-2", 0, _rows("SAN-2", [
        {"attribute_path": "sys/id", "attribute_type": "string", "string_value": "SAN-2"}]), tmp=True)

    return {
        "data": data,
        "files": files,
        "runs": {run3: part0.num_rows + part1.num_rows, run2: table2.num_rows},
        "incomplete": ["SAN-2"],
        "file_bytes": {
            f"{run3}/files/config/config.yaml": b"lr: 0.1\n",
            f"{prefix}/model/weights": b"W" * 100,
            f"{prefix}/samples/1.png": b"PNG1",
            f"{prefix}/dataset/files_list.json": (raw / "dataset" / "files_list.json").read_bytes(),
        },
    }
