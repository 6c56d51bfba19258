"""`migrate doctor` for local_fs: every root writable (probed, nothing left behind) and room for the export."""

from __future__ import annotations

from migrate_core.checks import CheckResult, DoctorContext, disk_space, writable


def checks(config, context: DoctorContext) -> list[CheckResult]:
    state = config.state_path if config.state_path is not None else config.data_path.parent / "migrate-state"
    results = [writable(config.data_path, "data path"), writable(config.files_path, "files path"),
               writable(state, "state path")]
    results.append(disk_space(config.data_path, context.export_estimate))
    return results
