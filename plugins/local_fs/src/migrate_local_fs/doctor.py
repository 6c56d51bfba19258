"""`migrate doctor` for local_fs: every root writable (probed, nothing left behind) and room for the export."""

from __future__ import annotations

from migrate_core.checks import CheckResult, DoctorContext, disk_space, failed, passed, writable


def checks(config, context: DoctorContext) -> list[CheckResult]:
    if any(isinstance(p, str) for p in (config.data_path, config.files_path, config.state_path)):
        return _url_checks(config)
    state = config.state_path if config.state_path is not None else config.data_path.parent / "migrate-state"
    results = [writable(config.data_path, "data path"), writable(config.files_path, "files path"),
               writable(state, "state path")]
    results.append(disk_space(config.data_path, context.export_estimate))
    return results


def _url_checks(config) -> list[CheckResult]:
    """A URL root (s3://...): the bucket is reachable and exists; the state path, local, is writable."""
    from migrate_core.errors import UsageError

    from . import _make

    try:
        storage = _make(config)
        check = getattr(storage, "_check_root", None)  # file:// roots are local disk: no store to reach
        if check is not None:
            check()
    except UsageError as exc:
        return [failed("object store", str(exc), "fix the URL, the bucket or the AWS_* settings")]
    return [passed("object store", f"{storage.describe()} reachable"), writable(storage.state_dir(), "state path")]
