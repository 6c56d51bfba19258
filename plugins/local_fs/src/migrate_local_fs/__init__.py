"""local_fs: parquet storage compatible with neptune-exporter dumps (reads theirs, writes theirs + manifest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from migrate_core import PluginConfig, StorageSpec, hookimpl
from pydantic import BeforeValidator, Field

__version__ = "0.1.0"

URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _path_or_url(value: Any) -> Any:
    """A URL (`s3://bucket/prefix`, `file:///x`) stays text (Path would fold `//`); anything else is a Path."""
    if isinstance(value, str) and URL_RE.match(value):
        return value
    return Path(value) if isinstance(value, str) else value


PathOrUrl = Annotated[Path | str, BeforeValidator(_path_or_url)]


class LocalFsConfig(PluginConfig):
    """`[storage.local_fs]`."""

    data_path: PathOrUrl = Field(Path("./exports/data"), description="Parquet parts, one folder per project; "
                                 "a path or a URL (s3://BUCKET/PREFIX, file:///PATH).")
    files_path: PathOrUrl = Field(Path("./exports/files"), description="Run files; file_value.path is relative "
                                  "to <files_path>/<project>; a path or a URL.")
    state_path: PathOrUrl | None = Field(
        None, description="Ledger and plugin state, always a local directory; default <data_path>/../migrate-state, "
        "outside the data root, because neptune-exporter's loader reads every folder there as a project, or "
        "./migrate-state/<scheme>/<bucket>/<prefix> when data_path is a URL.")
    part_size_mb: float = Field(50.0, gt=0, description="Target size of one parquet part; parts rotate at it.")
    row_group_rows: int = Field(262_144, gt=0, description="Rows buffered into one parquet row group.")
    compression: str = Field("snappy", description="Parquet compression codec (snappy, as neptune-exporter).")


def _make(config: LocalFsConfig):
    from .storage import LocalFsStorage

    roots = [config.data_path, config.files_path, config.state_path]
    cls: type[LocalFsStorage] = LocalFsStorage
    if any(isinstance(p, str) for p in roots):  # a URL somewhere (plain paths never reach this branch)
        from .objstore import ObjectStoreStorage, local_path

        # file:// is local disk: the local storage, with its renames and fsyncs; other URLs go through pyarrow.fs
        # (which refuses a remote state_path: the ledger is SQLite)
        roots = [p if p is None else (local_path(p) or p) for p in roots]
        if any(isinstance(p, str) for p in roots):
            cls = ObjectStoreStorage
    data_path, files_path, state_path = roots
    return cls(
        data_path=data_path,
        files_path=files_path,
        state_path=state_path,
        part_target_bytes=int(config.part_size_mb * 1024 * 1024),
        row_group_rows=config.row_group_rows,
        compression=config.compression,
    )


@hookimpl
def migrate_register_storages() -> list[StorageSpec]:
    return [
        StorageSpec(
            name="local_fs",
            description="Parquet files in the neptune-exporter layout, plus a manifest per run",
            factory=_make,
            config_model=LocalFsConfig,
        )
    ]


@hookimpl
def migrate_doctor_checks(kind, name, config, context):
    if (kind, name) != ("storage", "local_fs"):
        return None
    from .doctor import checks

    return checks(config, context)
