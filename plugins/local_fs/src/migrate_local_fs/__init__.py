"""local_fs: parquet storage compatible with neptune-exporter dumps (reads theirs, writes theirs + manifest)."""

from __future__ import annotations

from pathlib import Path

from migrate_core import PluginConfig, StorageSpec, hookimpl
from pydantic import Field

__version__ = "0.1.0"


class LocalFsConfig(PluginConfig):
    """`[storage.local_fs]`."""

    data_path: Path = Field(Path("./exports/data"), description="Parquet parts, one folder per project.")
    files_path: Path = Field(Path("./exports/files"), description="Run files; file_value.path is relative to <files_path>/<project>.")
    state_path: Path | None = Field(
        None, description="Ledger and plugin state; default <data_path>/../migrate-state, outside the data root, "
        "because neptune-exporter's loader reads every folder there as a project.")
    part_size_mb: float = Field(50.0, gt=0, description="Target size of one parquet part; parts rotate at it.")
    row_group_rows: int = Field(262_144, gt=0, description="Rows buffered into one parquet row group.")
    compression: str = Field("snappy", description="Parquet compression codec (snappy, as neptune-exporter).")


def _make(config: LocalFsConfig):
    from .storage import LocalFsStorage

    return LocalFsStorage(
        data_path=config.data_path,
        files_path=config.files_path,
        state_path=config.state_path,
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
