"""The hooks a migrate plugin may implement. Each is documented in docs/plugin-hooks.md.

Registration hooks return small frozen spec records (specs.py); lifecycle hooks observe runs. Rows never
pass through these hooks: the objects a spec's factory builds do the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .api import RunReport, Selection
    from .checks import CheckResult, DoctorContext
    from .specs import SinkSpec, SourceSpec, StorageSpec

PROJECT = "migrate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def migrate_register_sources() -> list[SourceSpec]:
    """Return the sources this plugin provides (a list of `SourceSpec`, possibly empty)."""
    raise NotImplementedError


@hookspec
def migrate_register_storages() -> list[StorageSpec]:
    """Return the storages this plugin provides (a list of `StorageSpec`, possibly empty)."""
    raise NotImplementedError


@hookspec
def migrate_register_sinks() -> list[SinkSpec]:
    """Return the sinks this plugin provides (a list of `SinkSpec`, possibly empty)."""
    raise NotImplementedError


@hookspec
def migrate_before_run(command: str, selection: Selection, components: dict[str, str]) -> None:
    """Called once before a command moves anything; `components` maps kind to the chosen plugin name."""


@hookspec
def migrate_after_run(command: str, summary: dict[str, Any]) -> None:
    """Called once after a command finished (also when some runs failed); `summary` is the JSON summary."""


@hookspec
def migrate_on_run_error(command: str, project_id: str, run_id: str, stage: str, error: str, report: RunReport) -> None:
    """Called each time one run fails in `stage` ("export", "load" or "verify"); the others go on."""


@hookspec
def migrate_doctor_checks(kind: str, name: str, config: Any, context: DoctorContext) -> list[CheckResult] | None:
    """`migrate doctor`: check the `kind` component `name` (its validated `config`) before anything moves.

    Called for every chosen component on every plugin: return None (or []) for components that are not
    yours. A hook that raises is shown as a failed check of that component; the others still run."""
