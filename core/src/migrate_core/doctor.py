"""`migrate doctor`: preflight of the chosen source, storage and sink before anything moves.

Core checks what it can for every component (installed and loaded, config table valid) and plans the export
to estimate its size; each plugin adds its own checks through the `migrate_doctor_checks` hook (credentials,
server, auth, project, paths, disk). A hook that raises is reported as a failed check, never a traceback.
Exit code: 0 when nothing failed (warnings allowed), 1 when a check failed.
"""

from __future__ import annotations

import os
import sys
import textwrap
import traceback
from dataclasses import dataclass, replace
from typing import Any

from . import config as cfg
from .checks import CheckResult, DoctorContext, ExportEstimate, failed, passed, warned
from .cli import Options, Session
from .errors import MigrateError, PluginError
from .logsetup import keep_stdout_for_results
from .plan import BYTES_PER_ROW
from .plugins import DISABLE_ENV, KINDS

# Parquet bytes per stored row when the plan gives rows only. Measured: the demo source's float series
# store at ~10 B/row (snappy); 16 leaves room for string series, histograms and file metadata. Files are
# extra: a source whose plan counts rows only cannot say how large its files are.

SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗"}
ASCII_SYMBOLS = {"ok": "ok", "warn": "!", "fail": "X"}


@dataclass(frozen=True)
class Row:
    plugin: str
    kind: str
    result: CheckResult

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {"plugin": self.plugin, "kind": self.kind, "check": r.check, "ok": r.ok, "status": r.status,
                "detail": r.detail, "fix": r.fix}


class DoctorSession(Session):
    """A Session that keeps going past a bad plugin table: doctor reports it as a failed check instead."""

    def _validate_plugin_tables(self) -> None:
        self.table_errors: list[tuple[str, str, str]] = []  # (kind, name, message) of tables doctor won't check
        chosen = {(kind, getattr(self.run, kind)) for kind in KINDS}
        failed_names = {f.name for f in self.registry.failed}
        for kind in KINDS:
            for name in self.config.table(kind):
                if (kind, name) in chosen or name in failed_names or name in self.registry.disabled:
                    continue  # the chosen ones get their own rows
                if name in self.registry.components[kind]:
                    try:
                        cfg.validate(self.config, self.registry.components[kind][name].config_model, (kind, name))
                    except cfg.ConfigError as exc:
                        self.table_errors.append((kind, name, str(exc)))
                else:
                    choices = ", ".join(self.registry.names(kind)) or "none installed"
                    self.table_errors.append((kind, name, f"config table [{kind}.{name}] "
                                              f"({self.config.origin(f'{kind}.{name}')}): no {kind} plugin "
                                              f"named {name!r}; installed: {choices}"))


def export_bytes(export_plan: dict[str, Any]) -> tuple[int, str]:
    """The export's size in bytes and how it was obtained: the plan's own estimate when it has one, else its
    estimated rows times BYTES_PER_ROW."""
    estimated = export_plan.get("estimated_bytes")
    if estimated is not None:
        return int(estimated), "dry-run estimate"
    return int(export_plan.get("estimated_rows") or 0) * BYTES_PER_ROW, f"rows x {BYTES_PER_ROW} B"


def run_checks(session: DoctorSession, timeout: float) -> list[Row]:
    chosen = [(kind, getattr(session.run, kind)) for kind in KINDS if getattr(session.run, kind)]
    context = DoctorContext(projects=tuple(session.run.projects), timeout=timeout, components=dict(chosen))
    rows: list[Row] = [Row(name, kind, failed("config", message, _CONFIG_FIX))
                       for kind, name, message in session.table_errors]
    chosen_names = {name for _kind, name in chosen}
    for failure in session.registry.failed:
        if failure.name not in chosen_names:
            rows.append(Row(failure.name, failure.kind or "plugin", warned(
                "installed", f"{failure.distribution} failed to load (not used here): {failure.error}",
                f"reinstall {failure.distribution}, or hide it with {DISABLE_ENV}={failure.name}")))
    source_ok = True
    for kind, name in chosen:
        if kind == "storage":
            context = replace(context, export_estimate=_estimate(session, rows) if source_ok else None)
        results = component_checks(session, kind, name, context)
        rows += [Row(name, kind, r) for r in results]
        if kind == "source":
            source_ok = all(r.ok for r in results)
    return rows


_CONFIG_FIX = "correct that key where it is set (file, MIGRATE__ env var or --set); `migrate config show` lists them"


def component_checks(session: DoctorSession, kind: str, name: str, context: DoctorContext) -> list[CheckResult]:
    """Core's generic checks for one component, then every plugin's hook results for it."""
    try:
        spec = session.registry.get(kind, name)  # type: ignore[arg-type]
    except PluginError as exc:
        return [failed("installed", str(exc), _install_fix(session, kind, name, str(exc)))]
    results = [passed("installed", f"{spec.distribution} {spec.version}".strip())]
    try:
        _spec, config = session.plugin_config(kind, name)
    except cfg.ConfigError as exc:
        return [*results, failed("config", str(exc), _CONFIG_FIX)]
    results.append(passed("config", f"[{kind}.{name}] valid ({session.config.origin(f'{kind}.{name}')})"))
    hook = session.registry.pm.hook.migrate_doctor_checks
    offered = {"kind": kind, "name": name, "config": config, "context": context}
    for impl in reversed(hook.get_hookimpls()):  # pluggy's own calling order: last registered first
        try:
            answer = impl.function(**{arg: offered[arg] for arg in impl.argnames})
            keep_stdout_for_results()  # an SDK imported by the checks may log to stdout: keep it for results
            for item in answer or []:
                if not isinstance(item, CheckResult):
                    raise TypeError(f"returned a {type(item).__name__}, not a CheckResult")
                results.append(item)
        except Exception as exc:
            if os.environ.get("MIGRATE_TRACEBACK"):
                traceback.print_exc()
            results.append(failed("checks", f"the checks of plugin {impl.plugin_name} raised "
                                  f"{type(exc).__name__}: {exc}",
                                  "a bug in that plugin: report it to its authors (MIGRATE_TRACEBACK=1 shows where)"))
    return results


def _install_fix(session: DoctorSession, kind: str, name: str, error: str) -> str:
    if name in session.registry.disabled:
        return f"remove {name} from {DISABLE_ENV}"
    if "failed to load" in error:
        dist = next((f.distribution for f in session.registry.failed if f.name == name), name)
        return f"reinstall {dist} (its import failed: see the error), or choose another {kind}"
    if "more than one distribution" in error:
        return f"uninstall one of them, or disable one with {DISABLE_ENV}"
    return f"install the plugin that provides {kind} {name!r} (e.g. `uv pip install migrate-{name}`), " \
           f"or pass --{kind} with an installed one (`migrate plugins list`)"


def _estimate(session: DoctorSession, rows: list[Row]) -> ExportEstimate | None:
    """Plan the export (as `migrate export --dry-run` does) and add a row saying how big it is."""
    from .orchestrator import Orchestrator
    from .plan import make_plan

    source_name = session.run.source
    try:
        storage = session.storage()
    except MigrateError:
        return None  # the storage's own rows say why
    source = None
    try:
        source = session.source()
        orch = Orchestrator(storage, source=source, selection=session.selection())
        plan = make_plan("export", storage, session.selection(), source=source, decide=orch.export_decision)
    except MigrateError as exc:
        rows.append(Row(source_name, "source", failed(
            "export plan", str(exc), "fix what it says; `migrate export --dry-run` shows the same plan")))
        return None
    finally:
        for component in (source, storage):
            if component is not None:
                component.close()
    export_plan = plan["export"]
    counted = export_plan.get("estimated_bytes") is not None or any(
        r["estimated_rows"] is not None for r in export_plan["runs"] if r["action"] == "export")
    if export_plan["to_move"] and not counted:
        rows.append(Row(source_name, "source", passed(
            "export plan", f"{export_plan['to_move']} of {len(export_plan['runs'])} runs to export; "
                           f"the source does not estimate their size")))
        return None
    size, basis = export_bytes(export_plan)
    estimate = ExportEstimate(runs=export_plan["to_move"], rows=export_plan["estimated_rows"] or 0, bytes=size,
                              basis=basis)
    from .checks import human_bytes

    rows.append(Row(source_name, "source", passed(
        "export plan", f"{estimate.runs} of {len(export_plan['runs'])} runs to export, ~{estimate.rows:,} rows, "
                       f"~{human_bytes(size)} ({basis})")))
    return estimate


# ------------------------------------------------------------------------------------------- output


def render_json(rows: list[Row]) -> dict[str, Any]:
    return {"ok": all(r.result.ok for r in rows), "checks": [r.as_json() for r in rows]}


def _symbols() -> dict[str, str]:
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_SYMBOLS
    return SYMBOLS


def summary_line(rows: list[Row]) -> str:
    counts = {status: sum(1 for r in rows if r.result.status == status) for status in ("ok", "warn", "fail")}
    return (f"doctor: {counts['ok']} passed, {counts['warn']} warning{'s' * (counts['warn'] != 1)}, "
            f"{counts['fail']} failed")


def render_plain(rows: list[Row], width: int = 80) -> str:
    """Aligned lines that fit `width`: symbol, component, check, what was found; the fix below a failure."""
    symbols = _symbols()
    who = max((len(f"{r.kind} {r.plugin}") for r in rows), default=0)
    who = min(who, 22)
    what = min(max((len(r.result.check) for r in rows), default=0), 14)
    lines = []
    for r in rows:
        head = f"{symbols[r.result.status]:<2} {f'{r.kind} {r.plugin}':<{who}} {r.result.check:<{what}} "
        indent = " " * min(len(head), 40)
        lines += textwrap.wrap(r.result.detail, width, initial_indent=head, subsequent_indent=indent,
                               break_on_hyphens=False) or [head.rstrip()]
        if r.result.fix:
            lines += textwrap.wrap(r.result.fix, width, initial_indent=indent + "fix: ",
                                   subsequent_indent=indent + "     ", break_on_hyphens=False)
    lines.append(summary_line(rows))
    return "\n".join(lines)


def render_rich(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    table = Table(show_lines=False, expand=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("component", overflow="fold")
    table.add_column("check", overflow="fold")
    table.add_column("result", overflow="fold", ratio=1)
    for r in rows:
        result = Text(r.result.detail)
        if r.result.fix:
            result.append(f"\nfix: {r.result.fix}", style="cyan")
        table.add_row(Text(SYMBOLS[r.result.status], style=styles[r.result.status]), f"{r.kind} {r.plugin}",
                      r.result.check, result)
    console = Console()
    console.print(table)
    console.print(summary_line(rows))


def doctor_command(options: Options, timeout: float, json_out: bool) -> int:
    import json

    session = DoctorSession(options)
    from .cli import _ready

    _ready("doctor")
    rows = run_checks(session, timeout)
    if json_out:
        sys.stdout.write(json.dumps(render_json(rows), indent=2, ensure_ascii=False) + "\n")
    elif sys.stdout.isatty():
        render_rich(rows)
    else:
        sys.stdout.write(render_plain(rows) + "\n")
    return 0 if all(r.result.ok for r in rows) else 1
