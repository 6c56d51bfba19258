"""Reading back what an export stored, for end-to-end tests of any source."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from migrate_core.format import plain
from migrate_local_fs.storage import LocalFsStorage


def stored_runs(root: Path) -> tuple[LocalFsStorage, dict[str, Any]]:
    """The default local_fs storage under `root` (the CLI's cwd) and its runs by run id."""
    storage = LocalFsStorage(root / "exports" / "data", root / "exports" / "files")
    return storage, {r.run_id: r for r in storage.list_runs()}


def table_of(storage: LocalFsStorage, run: Any) -> pa.Table:
    """All rows of a stored run, identity columns as plain strings."""
    return plain(pa.Table.from_batches(list(storage.read(run))))


def rows(table: pa.Table, path: str) -> pa.Table:
    return table.filter(pc.equal(table["attribute_path"], path))


def decimals(values: Any) -> list[Decimal]:
    """Float steps as the canonical decimal(18, 6) values they must be stored as."""
    return [Decimal(repr(float(v))).quantize(Decimal("0.000001")) for v in values]
