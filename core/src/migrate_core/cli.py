"""The `migrate` command line.

Every command reads the same layered config (config.py); results go to stdout (`--json` for machines),
logs and progress to stderr. Exit codes: 0 ok, 1 some runs failed (or lost data under --strict),
2 usage or config error, 130 interrupted.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import completion
from .completion import Shell
from .errors import MigrateError, PluginError, UsageError
from .helptext import (
    BEFORE_COMMAND,
    PANEL_EXECUTION,
    PANEL_OUTPUT,
    PANEL_PLUGINS,
    PANEL_SELECTION,
    PANEL_SHELL,
    PANEL_SOURCE,
    PANEL_STORAGE,
    Command,
    Group,
    choices,
    examples,
)

# Everything heavy (pydantic through config, pyarrow through api, structlog through logsetup and plugins) is
# imported where a command needs it, so `migrate --help` and `migrate --version` start in a fraction of the
# time; a command that moves data imports them all anyway.
if TYPE_CHECKING:
    from .api import Selection, Sink, Source, Storage
    from .plugins import Registry

app = typer.Typer(
    name="migrate",
    cls=Group,
    help="Move ML experiment-tracking history between systems (Neptune -> Pluto, ...) without losing data.",
    epilog=examples("migrate export --source demo", "migrate inspect",
                    "migrate run --source neptune3 --sink pluto -p ws/proj"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
plugins_app = typer.Typer(cls=Group, help="Installed plugins.", no_args_is_help=True,
                          epilog=examples("migrate plugins list", "migrate plugins list --json"))
config_app = typer.Typer(cls=Group, help="Effective configuration.", no_args_is_help=True,
                         epilog=examples("migrate config show", "migrate config show --sink pluto --json"))
app.add_typer(plugins_app, name="plugins")
app.add_typer(config_app, name="config")

# Tests inject extra plugins (in-memory fakes) here; users install entry points instead.
EXTRA_PLUGINS: list[object] = []
_GC_PAUSED = False  # main() of a process of its own collects no garbage while a command imports its modules
_LOG_LEVEL = "info"  # the root's --log-level, passed on to `export --processes` children
_LOG_FORMAT = "auto"
_QUIET = False  # --quiet / MIGRATE_QUIET: no progress, warnings and errors only, then the summary
_NO_PROGRESS = False  # --no-progress / MIGRATE_NO_PROGRESS: no bars, logs as usual

ConfigOpt = Annotated[
    Path | None,
    typer.Option("-c", "--config", metavar="PATH", rich_help_panel=PANEL_PLUGINS,
                 help="TOML config file (default: ./migrate.toml if present).", show_default=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", rich_help_panel=PANEL_PLUGINS,
                 help="Override any config key: --set source.demo.runs=10 (repeatable).", show_default=False),
]
SourceOpt = Annotated[str | None, typer.Option("--source", metavar="NAME", rich_help_panel=PANEL_PLUGINS,
                                               help="Source plugin (default: demo).", show_default=False)]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", metavar="NAME", rich_help_panel=PANEL_PLUGINS,
                             help="Storage plugin (default: local_fs).", show_default=False)
]
SinkOpt = Annotated[str | None, typer.Option("--sink", metavar="NAME", rich_help_panel=PANEL_PLUGINS,
                                             help="Sink plugin, e.g. pluto.", show_default=False)]
ProjectOpt = Annotated[
    list[str] | None,
    typer.Option("-p", "--project", metavar="WS/PROJECT", rich_help_panel=PANEL_SELECTION,
                 help="Project to move (repeatable; default: all).", show_default=False),
]
RunsOpt = Annotated[str | None, typer.Option("-r", "--runs", metavar="REGEX", rich_help_panel=PANEL_SELECTION,
                                             help="Regex on run ids.", show_default=False)]
AttrsOpt = Annotated[str | None, typer.Option("-a", "--attributes", metavar="REGEX", rich_help_panel=PANEL_SELECTION,
                                              help="Regex on attribute paths.", show_default=False)]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, metavar="N", rich_help_panel=PANEL_EXECUTION,
                 help="Runs in parallel (default 4; exports use the source's preference if it has one: "
                 "neptune3 2).", show_default=False),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", rich_help_panel=PANEL_EXECUTION,
                                         help="Show the plan (runs, rows per type, bytes, losses); write nothing.")]
StrictOpt = Annotated[bool, typer.Option("--strict", rich_help_panel=PANEL_EXECUTION,
                                         help="Exit 1 if any value could not be carried.")]
JsonOpt = Annotated[bool, typer.Option("--json", rich_help_panel=PANEL_OUTPUT,
                                       help="Machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", envvar="MIGRATE_QUIET", rich_help_panel=PANEL_OUTPUT,
    help="No progress and no info logs: warnings, errors and the summary only (also `migrate -q CMD`).")]
NoProgressOpt = Annotated[bool, typer.Option(
    "--no-progress", envvar="MIGRATE_NO_PROGRESS", rich_help_panel=PANEL_OUTPUT,
    help="No progress bars or progress lines; logs as usual (also `migrate --no-progress CMD`).")]
# text, not Path: a URL (s3://BUCKET/PREFIX) must keep its `//`; plain paths are made Paths by the storage's config
DataPathOpt = Annotated[
    str | None, typer.Option("--data-path", metavar="PATH|URL", rich_help_panel=PANEL_STORAGE,
                             help="Parquet root: a path or s3://BUCKET/PREFIX (default ./exports/data).",
                             show_default=False)
]
FilesPathOpt = Annotated[
    str | None, typer.Option("--files-path", metavar="PATH|URL", rich_help_panel=PANEL_STORAGE,
                             help="Files root: a path or s3://BUCKET/PREFIX (default ./exports/files).",
                             show_default=False)
]
ForceOpt = Annotated[bool, typer.Option(
    "--force", rich_help_panel=PANEL_EXECUTION,
    help="Redo runs already exported; on load, replace each selected run with a fresh load (Pluto "
         "cannot delete: the old run is kept, marked migrate:replaced).")]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", rich_help_panel=PANEL_EXECUTION,
                       help="Export again the complete runs whose source changed since their export.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", metavar="TIME", rich_help_panel=PANEL_SELECTION,
                 help="Only runs modified at/after this ISO time (UTC if no zone).", show_default=False),
]
QueryOpt = Annotated[
    str | None, typer.Option("--query", metavar="NQL", rich_help_panel=PANEL_SOURCE,
                             help="Server-side filter (Neptune NQL) for sources that take one.", show_default=False)
]
ClassesOpt = Annotated[
    list[str] | None,
    typer.Option("--classes", metavar="CLASS", rich_help_panel=PANEL_SOURCE,
                 help="Attribute classes to export, e.g. parameters, metrics, series, files "
                 "(repeatable; default all).", show_default=False),
]


class Archived(StrEnum):
    exclude = "exclude"
    include = "include"
    only = "only"


ArchivedOpt = Annotated[
    Archived | None,
    typer.Option("--archived", metavar=choices(Archived), rich_help_panel=PANEL_SELECTION,
                 help="Archived/trashed runs, for sources that have them (default: exclude).", show_default=False),
]
SkipFailedOpt = Annotated[
    bool,
    typer.Option("--skip-failed-attributes", rich_help_panel=PANEL_SOURCE,
                 help="Lossy: export a run even if some attributes fail to fetch (each is counted in the "
                 "report); default: the run fails."),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="TIME", rich_help_panel=PANEL_SELECTION,
                             help="Only runs modified before this ISO time.", show_default=False)
]
RetryOpt = Annotated[bool, typer.Option(
    "--retry-failed", rich_help_panel=PANEL_EXECUTION,
    help="Load runs whose last load failed, then the forks that were deferred for them.")]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", metavar="I/N", rich_help_panel=PANEL_SELECTION,
                 help="Export only shard I of N (0-based); run N exports with 0/N .. N-1/N, e.g. one per core, "
                 "into the same storage, then one `migrate load`.", show_default=False),
]

ProcessesOpt = Annotated[
    int | None,
    typer.Option("--processes", min=1, max=256, metavar="N", rich_help_panel=PANEL_EXECUTION,
                 help="Split the export over N processes (one per core), each exporting its shard I/N with "
                 "--workers threads; one summary at the end. Default 1.", show_default=False),
]


class ExecutorName(StrEnum):
    threads = "threads"
    processes = "processes"
    dask = "dask"


ExecutorOpt = Annotated[
    ExecutorName | None,
    typer.Option("--executor", metavar=choices(ExecutorName), case_sensitive=False, rich_help_panel=PANEL_EXECUTION,
                 help="Where runs are processed: threads (this process, default), processes (a local pool of "
                 "--workers processes) or dask (a Dask cluster).", show_default=False),
]
DaskAddressOpt = Annotated[
    str | None,
    typer.Option("--dask-address", metavar="URL", rich_help_panel=PANEL_EXECUTION,
                 help="With --executor dask: the scheduler, e.g. tcp://10.0.0.5:8786; unset: a local cluster.",
                 show_default=False),
]


# Source options that several sources share, as first-class flags: flag -> candidate keys in the chosen
# source's table (the first one its config model has). Anything else: --set source.<name>.<key>=...
SOURCE_FLAG_KEYS: dict[str, tuple[str, ...]] = {
    "query": ("query",),
    "classes": ("classes",),
    "archived": ("archived", "trashed"),
    "skip_failed_attributes": ("skip_failed_attributes",),
}


@dataclass
class Options:
    config: Path | None = None
    sets: tuple[str, ...] = ()
    source: str | None = None
    storage: str | None = None
    sink: str | None = None
    projects: tuple[str, ...] = ()
    runs: str | None = None
    attributes: str | None = None
    workers: int | None = None
    strict: bool = False
    data_path: str | Path | None = None  # a path or a URL
    files_path: str | Path | None = None
    since: str | None = None
    until: str | None = None
    shard: str | None = None
    processes: int | None = None
    executor: str | None = None
    dask_address: str | None = None

    source_flags: dict[str, Any] | None = None  # flag name -> value, for the chosen source's own table

    def flags(self, storage_name: str | None = None, source_keys: dict[str, str] | None = None) -> dict[str, Any]:
        flags: dict[str, Any] = {
            "run.source": self.source,
            "run.storage": self.storage,
            "run.sink": self.sink,
            "run.projects": list(self.projects) if self.projects else None,
            "run.runs": self.runs,
            "run.attributes": self.attributes,
            "run.workers": self.workers,
            "run.strict": True if self.strict else None,
            "run.since": self.since,
            "run.until": self.until,
            "run.shard": self.shard,
            "run.processes": self.processes,
            "executor.name": self.executor,
            "executor.address": self.dask_address,
        }
        if storage_name:
            flags[f"storage.{storage_name}.data_path"] = str(self.data_path) if self.data_path else None
            flags[f"storage.{storage_name}.files_path"] = str(self.files_path) if self.files_path else None
        for flag, key in (source_keys or {}).items():
            flags[key] = (self.source_flags or {})[flag]
        return flags

    @staticmethod
    def flag_names(flags: dict[str, Any]) -> dict[str, str]:
        """Each key of flags() -> its option, for the provenance `config show` prints (`flag --data-path`)."""
        names = {"run.projects": "--project", "executor.name": "--executor", "executor.address": "--dask-address"}
        for key in flags:
            last = key.rsplit(".", 1)[-1]
            flag = next((f for f, keys in SOURCE_FLAG_KEYS.items() if key.startswith("source.") and last in keys),
                        last)
            names.setdefault(key, "--" + flag.replace("_", "-"))
        return names


class Session:
    """Everything one command needs: config, registry, and the chosen components (built lazily)."""

    def __init__(self, options: Options) -> None:
        from . import config as cfg
        from .plugins import discover

        self.options = options
        self.registry: Registry = discover(EXTRA_PLUGINS)
        first = cfg.load(options.config, options.sets, options.flags())
        first_run = first.run_config()
        source_keys = self._source_keys(first_run.source)
        flags = options.flags(first_run.storage, source_keys)
        self.config = cfg.load(options.config, options.sets, flags, flag_names=options.flag_names(flags))
        self.run = self.config.run_config()
        self._validate_plugin_tables()

    def _source_keys(self, source: str) -> dict[str, str]:
        """Map source flags (--query, --classes, ...) to keys of the chosen source's config table."""
        given = {k: v for k, v in (self.options.source_flags or {}).items() if v not in (None, False, [], ())}
        if not given:
            return {}
        fields = self.registry.get("source", source).config_model.model_fields
        keys = {}
        for flag in given:
            key = next((k for k in SOURCE_FLAG_KEYS[flag] if k in fields), None)
            if key is None:
                option = "--" + flag.replace("_", "-")
                raise UsageError(f"{option} is not supported by source {source!r}")
            keys[flag] = f"source.{source}.{key}"
        return keys

    def _validate_plugin_tables(self) -> None:
        from . import config as cfg
        from .plugins import KINDS

        failed = {f.name for f in self.registry.failed}
        for kind in KINDS:
            for name in self.config.table(kind):
                if name in self.registry.components[kind]:
                    cfg.validate(self.config, self.registry.components[kind][name].config_model, (kind, name))
                elif name not in failed and name not in self.registry.disabled:
                    choices = ", ".join(self.registry.names(kind)) or "none installed"
                    raise cfg.ConfigError(
                        f"config table [{kind}.{name}] ({self.config.origin(f'{kind}.{name}')}): "
                        f"no {kind} plugin named {name!r}; installed: {choices}"
                    )

    def selection(self) -> Selection:
        from . import config as cfg
        from .api import Selection

        return Selection(
            projects=tuple(self.run.projects),
            runs=re.compile(self.run.runs) if self.run.runs else None,
            attributes=re.compile(self.run.attributes) if self.run.attributes else None,
            modified_since=self.run.since,
            modified_until=self.run.until,
            shard=cfg.parse_shard(self.run.shard) if self.run.shard else None,
        )

    def plugin_config(self, kind: str, name: str) -> Any:
        from . import config as cfg

        spec = self.registry.get(kind, name)  # type: ignore[arg-type]
        return spec, cfg.validate(self.config, spec.config_model, (kind, name))

    def build(self, kind: str, name: str | None) -> Any:
        if not name:
            raise UsageError(f"no {kind} chosen: pass --{kind} NAME or set run.{kind} in the config")
        spec, config = self.plugin_config(kind, name)
        try:
            component = spec.factory(config)
        except MigrateError:
            raise
        except Exception as exc:
            raise PluginError(f"{kind} {name!r} could not start: {type(exc).__name__}: {exc}") from exc
        if not getattr(component, "name", ""):
            component.name = name
        return component

    def storage(self) -> Storage:
        return self.build("storage", self.run.storage)

    def source(self) -> Source:
        return self.build("source", self.run.source)

    def sink(self) -> Sink:
        return self.build("sink", self.run.sink)


def _options(**kwargs: Any) -> Options:
    return Options(
        config=kwargs.get("config"),
        sets=tuple(kwargs.get("set_") or ()),
        source=kwargs.get("source"),
        storage=kwargs.get("storage"),
        sink=kwargs.get("sink"),
        projects=tuple(kwargs.get("project") or ()),
        runs=kwargs.get("runs"),
        attributes=kwargs.get("attributes"),
        workers=kwargs.get("workers"),
        strict=bool(kwargs.get("strict")),
        data_path=kwargs.get("data_path"),
        files_path=kwargs.get("files_path"),
        since=kwargs.get("since"),
        until=kwargs.get("until"),
        shard=kwargs.get("shard"),
        processes=kwargs.get("processes"),
        executor=getattr(kwargs.get("executor"), "value", None),
        dask_address=kwargs.get("dask_address"),
        # choices arrive as enum members (--archived): the config gets their plain value
        source_flags={flag: getattr(kwargs.get(flag), "value", kwargs.get(flag)) for flag in SOURCE_FLAG_KEYS},
    )


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _progress(json_out: bool):
    from .processes import ChildProgress, is_child
    from .progress import LineProgress, Progress, RichProgress

    if is_child():
        return ChildProgress()  # the parent of `export --processes` shows one progress for all
    if json_out or _QUIET or _NO_PROGRESS:
        return Progress()
    return RichProgress() if sys.stderr.isatty() else LineProgress()


def _output_options(kwargs: dict[str, Any]) -> None:
    """A data command's own --quiet / --no-progress (the root's are set already)."""
    global _QUIET, _NO_PROGRESS
    if kwargs.get("no_progress"):
        _NO_PROGRESS = True
    if kwargs.get("quiet") and not _QUIET:
        _QUIET = True
        _quiet_logging()


def _quiet_logging() -> None:
    from .logsetup import LEVELS, configure_logging

    if LEVELS[_LOG_LEVEL] < LEVELS["warning"]:
        configure_logging("warning", _LOG_FORMAT)


# ------------------------------------------------------------------------------------------- root


def _version(value: bool) -> None:
    if value:
        from . import __version__

        _out(f"migrate {__version__}")
        raise typer.Exit()


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    auto = "auto"
    console = "console"
    json = "json"


@app.callback()
def root(
    ctx: typer.Context,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", metavar=choices(LogLevel), case_sensitive=False,
                               envvar="MIGRATE_LOG_LEVEL", rich_help_panel=PANEL_OUTPUT, help="Log level.")
    ] = LogLevel.info,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", metavar=choices(LogFormat), case_sensitive=False,
                                rich_help_panel=PANEL_OUTPUT,
                                help="auto: console lines on a terminal, else JSON lines.")
    ] = LogFormat.auto,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    install_completion: Annotated[
        Shell | None, typer.Option("--install-completion", metavar=choices(Shell), callback=completion.install,
                                   expose_value=False, is_eager=True, rich_help_panel=PANEL_SHELL,
                                   help="Install tab completion for this shell.", show_default=False)
    ] = None,
    show_completion: Annotated[
        Shell | None, typer.Option("--show-completion", metavar=choices(Shell), callback=completion.show,
                                   expose_value=False, is_eager=True, rich_help_panel=PANEL_SHELL,
                                   help="Print the completion script, to install it by hand.", show_default=False)
    ] = None,
    quiet: QuietOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    global _LOG_LEVEL, _LOG_FORMAT, _QUIET, _NO_PROGRESS
    _LOG_LEVEL, _LOG_FORMAT = log_level.value, log_format.value
    _QUIET, _NO_PROGRESS = quiet, no_progress

    def start_logging() -> None:
        from .logsetup import configure_logging

        configure_logging(log_level.value, log_format.value)
        if _QUIET:
            _quiet_logging()

    # run as the command starts (helptext.Command), so `migrate export --help` imports no structlog
    ctx.meta[BEFORE_COMMAND] = start_logging


# ------------------------------------------------------------------------------------------- moving data


def _move(command: str, kwargs: dict[str, Any], need_source: bool, need_sink: bool) -> None:
    from . import processes
    from .orchestrator import Orchestrator

    _output_options(kwargs)
    session = Session(_options(**kwargs))
    if session.run.shard and command != "export":
        # a fork and its parent may fall in different shards; only one load sees both and orders them
        raise UsageError(f"run.shard ({session.config.origin('run.shard')}) splits exports only: export each "
                         "shard with `migrate export --shard I/N`, then load everything with one `migrate load`")
    # load and run stay in one process (forks load after their parents, which one process orders)
    split = command == "export" and session.run.processes > 1 and not processes.is_child()
    executor_config = session.config.executor_config()
    if split and executor_config.name != "threads":
        raise UsageError(f"--processes and --executor {executor_config.name}: choose one (--executor processes "
                         "spreads the runs over --workers processes itself)")
    if executor_config.address and executor_config.name != "dask":
        raise UsageError(f"executor.address ({session.config.origin('executor.address')}) is for the dask executor: "
                         f"add --executor dask, or drop the address (executor now: {executor_config.name})")
    if split and session.run.shard:
        raise UsageError("--processes and --shard: choose one (--processes N runs the shards 0/N .. N-1/N itself)")
    if split and not kwargs.get("dry_run"):
        _export_in_processes(session, kwargs)
        return
    json_out = bool(kwargs.get("json_out"))
    storage = session.storage()
    source = session.source() if need_source else None
    sink = session.sink() if need_sink else None
    from .logsetup import keep_stdout_for_results

    keep_stdout_for_results()  # the factories imported the SDKs, some of which log to stdout
    selection = session.selection()
    _ready(command)
    try:
        orch = Orchestrator(
            storage,
            source=source,
            sink=sink,
            source_name=session.run.source if source is not None else "",
            selection=selection,
            workers=session.run.workers,
            export_workers=_export_workers(session, source),
            force=bool(kwargs.get("force")),
            refresh=bool(kwargs.get("refresh")),
            retry_failed=bool(kwargs.get("retry_failed")),
            progress=_progress(json_out),
            hooks=session.registry.pm.hook,
            cancel=threading.Event(),
            executor=_executor(session, executor_config, selection, kwargs, need_source, need_sink),
        )
        if kwargs.get("dry_run"):
            from .ledger import LEDGER_FILE
            from .plan import make_plan, render_plan

            # the load's own rule (already loaded, failed before) where a ledger exists: a dry run creates none
            ledger = sink is not None and (storage.state_dir() / LEDGER_FILE).exists()
            try:
                plan = make_plan(command, storage, selection, source=source, sink=sink, decide=orch.export_decision,
                                 load_decide=orch.load_decision if ledger else None)
            finally:
                orch.close()
            _emit_json(plan) if json_out else render_plan(plan)
            return
        components = {"storage": session.run.storage}
        if source is not None:
            components["source"] = session.run.source
        if sink is not None:
            components["sink"] = session.run.sink or ""
        hooks = not processes.is_child()  # the parent of `--processes` runs them once for the whole command
        if hooks:
            session.registry.pm.hook.migrate_before_run(command=command, selection=selection, components=components)
        summary = getattr(orch, command)()
        data = summary.as_json()
        if hooks:
            session.registry.pm.hook.migrate_after_run(command=command, summary=data)
    finally:
        for component in (source, sink, storage):
            if component is not None:
                component.close()
    _emit_json(data) if json_out else _render_summary(data)
    code = summary.exit_code(session.run.strict)
    if code:
        raise typer.Exit(code)


def _executor(session: Session, executor_config: Any, selection: Selection, kwargs: dict[str, Any],
              need_source: bool, need_sink: bool) -> Any:
    """The chosen executor; a worker process rebuilds the components from the merged config it carries."""
    from .executors import WorkerSpec, make_executor, new_token

    spec = WorkerSpec(
        token=new_token(),
        config=session.config.merged,
        source=session.run.source if need_source else None,
        storage=session.run.storage,
        sink=session.run.sink if need_sink else None,
        selection=selection,
        force=bool(kwargs.get("force")),
        refresh=bool(kwargs.get("refresh")),
        log_level=_LOG_LEVEL,
    )
    return make_executor(executor_config.name, executor_config.address, spec)


def _export_workers(session: Session, source: Source | None) -> int | None:
    """The source's preferred number of export workers, unless the user chose --workers (or run.workers)."""
    hint = getattr(source, "workers_hint", None) if source is not None else None
    from .config import DEFAULT_ORIGIN

    if hint and session.config.origin("run.workers") == DEFAULT_ORIGIN:
        return int(hint)
    return None


def _export_in_processes(session: Session, kwargs: dict[str, Any]) -> None:
    from . import processes

    _ready("export")
    count = session.run.processes
    json_out = bool(kwargs.get("json_out"))
    selection = session.selection()
    components = {"storage": session.run.storage, "source": session.run.source}
    session.registry.pm.hook.migrate_before_run(command="export", selection=selection, components=components)
    data = processes.export_in_processes(_child_args(kwargs), count, _LOG_LEVEL, _progress(json_out))
    session.registry.pm.hook.migrate_after_run(command="export", summary=data)
    code = processes.exit_code(data, session.run.strict)
    if code == 2:
        raise typer.Exit(2)  # every process stopped on the error it printed (once, above): nothing moved
    _emit_json(data) if json_out else _render_summary(data)
    if code:
        raise typer.Exit(code)


def _child_args(kwargs: dict[str, Any]) -> list[str]:
    """The export's own options, for its `--processes` children (paths absolute: they are this command's)."""
    args: list[str] = []
    if kwargs.get("config"):
        args += ["--config", str(Path(kwargs["config"]).resolve())]
    for item in kwargs.get("set_") or ():
        args += ["--set", item]
    for flag, key in (("--source", "source"), ("--storage", "storage"), ("--runs", "runs"),
                      ("--attributes", "attributes"), ("--since", "since"), ("--until", "until"),
                      ("--query", "query"), ("--archived", "archived")):
        if kwargs.get(key) is not None:
            args += [flag, str(kwargs[key])]
    if kwargs.get("workers") is not None:
        args += ["--workers", str(kwargs["workers"])]
    for key, flag in (("data_path", "--data-path"), ("files_path", "--files-path")):
        if kwargs.get(key) is not None:
            value = str(kwargs[key])
            args += [flag, value if "://" in value else str(Path(value).resolve())]
    for project in kwargs.get("project") or ():
        args += ["--project", project]
    for cls in kwargs.get("classes") or ():
        args += ["--classes", cls]
    for key, flag in (("skip_failed_attributes", "--skip-failed-attributes"), ("force", "--force"),
                      ("refresh", "--refresh"), ("strict", "--strict")):
        if kwargs.get(key):
            args.append(flag)
    return args


def _render_summary(data: dict[str, Any]) -> None:
    for stage, c in data["stages"].items():
        _out(
            f"{stage}: {c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped"
            + (f", {c['deferred']} deferred" if c.get("deferred") else "")
            + (f", {c['cancelled']} interrupted" if c["cancelled"] else "")
            + f" · {c['rows']:,} rows · {c['files']:,} files · {c['bytes']:,} bytes"
        )
    if not data["stages"]:
        _out(f"{data['command']}: nothing selected")
    losses = data["losses"]
    unfinished = [r for r in data["runs"] if r["status"] in ("failed", "deferred", "cancelled")]
    if losses:
        _out("not carried: " + "; ".join(f"{n} {what}" for what, n in losses.items()))
    elif unfinished or data["interrupted"]:
        # runs that did not finish may hold values nobody has counted yet: never call that lossless
        _out(f"not carried: nothing counted, but {len(unfinished)} runs did not finish (see below)")
    else:
        _out("not carried: nothing (lossless)")
    for r in data["runs"]:
        if r["status"] in ("failed", "deferred"):
            _out(f"{r['status'].upper()} {r['stage']} {r['project_id']} {r['run_id']}: {r['reason']}")
    for p in data.get("processes", []):
        if "error" in p:
            _out(f"FAILED {p['error']}")
    if data["interrupted"]:
        _out("interrupted: re-run the same command to resume")
    _out(f"time: {data['seconds']:.1f} s")


@app.command(cls=Command, epilog=examples(
    "migrate export --source demo",
    "migrate export --source neptune3 -p ws/proj --processes 4",
    "migrate export --source neptune2 -p ws/proj --since 2025-01-01 --dry-run",
    "migrate export --source neptune3 -p ws/proj --executor dask",
))
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    attributes: AttrsOpt = None,
    workers: WorkersOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    query: QueryOpt = None,
    classes: ClassesOpt = None,
    archived: ArchivedOpt = None,
    skip_failed_attributes: SkipFailedOpt = False,
    force: ForceOpt = False,
    refresh: RefreshOpt = False,
    shard: ShardOpt = None,
    processes: ProcessesOpt = None,
    executor: ExecutorOpt = None,
    dask_address: DaskAddressOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Source -> storage. Complete runs are skipped; interrupted ones are redone from scratch."""
    _move("export", locals(), need_source=True, need_sink=False)


@app.command(cls=Command, epilog=examples(
    "migrate load --sink pluto",
    "migrate load --sink pluto -p ws/proj --retry-failed",
    "migrate load --sink pluto --executor dask --dask-address tcp://10.0.0.5:8786",
))
def load(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    sink: SinkOpt = None,
    storage: StorageOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    workers: WorkersOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    force: ForceOpt = False,
    retry_failed: RetryOpt = False,
    executor: ExecutorOpt = None,
    dask_address: DaskAddressOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Storage -> sink (also reads neptune-exporter dumps). Parents load before their forks."""
    _move("load", locals(), need_source=False, need_sink=True)


@app.command(cls=Command, epilog=examples(
    "migrate run --source neptune3 --sink pluto -p ws/proj",
    "migrate run --source demo --sink pluto --dry-run",
    "migrate run --source neptune3 --sink pluto --executor processes --workers 8",
))
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    sink: SinkOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    attributes: AttrsOpt = None,
    workers: WorkersOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    query: QueryOpt = None,
    classes: ClassesOpt = None,
    archived: ArchivedOpt = None,
    skip_failed_attributes: SkipFailedOpt = False,
    force: ForceOpt = False,
    refresh: RefreshOpt = False,
    retry_failed: RetryOpt = False,
    executor: ExecutorOpt = None,
    dask_address: DaskAddressOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Export and load, pipelined: each run is loaded as soon as its export commits."""
    _move("run", locals(), need_source=True, need_sink=True)


@app.command(cls=Command, epilog=examples(
    "migrate verify --sink pluto",
    "migrate verify --sink pluto -p ws/proj --json",
))
def verify(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    sink: SinkOpt = None,
    storage: StorageOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    workers: WorkersOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Read every loaded run back from the sink and reconcile it with storage; exit 1 on any mismatch."""
    from .api import Sink as SinkBase
    from .orchestrator import Orchestrator

    _output_options(locals())
    session = Session(_options(**locals()))
    storage_obj = session.storage()
    sink_obj = session.sink()
    _ready("verify")
    try:
        if type(sink_obj).verify_run is SinkBase.verify_run:
            raise UsageError(f"sink {session.run.sink!r} has no verification; nothing to check")
        orch = Orchestrator(
            storage_obj, sink=sink_obj, selection=session.selection(), workers=session.run.workers,
            progress=_progress(json_out),
        )
        summary = orch.verify()
    finally:
        sink_obj.close()
        storage_obj.close()
    results = [
        {"project_id": o.project_id, "run_id": o.run_id, "ok": o.status == "ok", "mismatches": o.report.notes
         or ([o.reason] if o.reason else [])}
        for o in summary.outcomes
    ]
    if json_out:
        _emit_json({"ok": all(r["ok"] for r in results), "runs": results})
    else:
        for r in results:
            _out(f"{'ok      ' if r['ok'] else 'MISMATCH'} {r['project_id']} {r['run_id']}")
            for m in r["mismatches"]:
                _out(f"    {m}")
        bad = sum(1 for r in results if not r["ok"])
        _out(f"verify: {len(results) - bad} ok, {bad} mismatched")
    code = summary.exit_code(False)
    if code:
        raise typer.Exit(code)


@app.command(cls=Command, epilog=examples(
    "migrate inspect",
    "migrate inspect --data-path /data/exports/data --json",
))
def inspect(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What is in storage: runs, completeness (manifest or neptune-exporter's part_0 rule), rows by type."""
    from .inventory import describe_run
    from .ledger import LEDGER_FILE, Ledger

    session = Session(_options(**locals()))
    storage_obj = session.storage()
    selection = session.selection()
    _ready("inspect")
    stored = [
        r for r in storage_obj.list_runs(selection.projects)
        if selection.wants_project(r.project_id) and selection.wants_run(r.run_id)
    ]
    states: dict[tuple[str, str], dict[str, str]] = {}
    exports = {r.key: r for r in stored}
    if (storage_obj.state_dir() / LEDGER_FILE).exists():
        ledger = Ledger(storage_obj.state_dir())
        for entry in ledger.entries():
            state = entry.state
            run = exports.get((entry.project_id, entry.run_id))
            if state == "done" and entry.export_id and run is not None and entry.export_id != run.export_id:
                state = "done, older export (the next load sends the changes)"
            states.setdefault((entry.project_id, entry.run_id), {})[entry.target] = state
        ledger.close()
    rows = [describe_run(storage_obj, r, states.get(r.key)) for r in stored]
    if json_out:
        _emit_json(rows)
        return
    if not rows:
        _out(f"storage {storage_obj.describe()} is empty")
        return
    from .inspect_table import render

    render(rows, storage_obj.describe())


class ReportFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"


@app.command(cls=Command, epilog=examples(
    "migrate report                    # writes ./migrate-report.html",
    "migrate report --sink pluto --format md",
    "migrate report --format json -o report.json",
))
def report(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    sink: SinkOpt = None,
    project: ProjectOpt = None,
    runs: RunsOpt = None,
    workers: WorkersOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    format_: Annotated[ReportFormat, typer.Option(
        "--format", metavar=choices(ReportFormat), rich_help_panel=PANEL_OUTPUT,
        help="html: one self-contained file with plots (default ./migrate-report.html); md or json: "
        "to stdout unless --output.")] = ReportFormat.html,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", rich_help_panel=PANEL_OUTPUT, help="Write the report to this file.",
        show_default=False)] = None,
) -> None:
    """What the migration did, per project and run: exported, loaded, verified, skipped and why, every loss.

    Built from the manifests and the ledger; with --sink, each loaded run is also read back from the sink.
    """
    from .report import build, render

    session = Session(_options(**locals()))
    storage_obj = session.storage()
    sink_obj = session.sink() if session.options.sink else None
    fmt = format_.value
    _ready("report")
    try:
        built = build(storage_obj, session.selection(), sink_obj, sink_name=session.options.sink or "",
                      workers=session.run.workers, series=fmt == "html")
    finally:
        if sink_obj is not None:
            sink_obj.close()
        storage_obj.close()
    text = render(built, fmt)
    if output is None and fmt != "html":
        sys.stdout.write(text)
        return
    path = (output or Path("migrate-report.html")).resolve()
    _write_text_atomic(path, text)
    _out(str(path))


def _write_text_atomic(path: Path, text: str) -> None:
    """tmp + rename, so an open report is never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@app.command(cls=Command, epilog=examples(
    "migrate doctor",
    "migrate doctor --source neptune3 --sink pluto -p ws/proj",
    "migrate doctor --sink pluto --json",
))
def doctor(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    sink: SinkOpt = None,
    project: ProjectOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, metavar="SECONDS", rich_help_panel=PANEL_EXECUTION,
                                           help="Seconds each network probe may take.")] = 5.0,
    json_out: JsonOpt = False,
) -> None:
    """Preflight: credentials, server, auth, project, storage paths and disk of the chosen plugins; a fix for
    each failure. Exit 1 if any check failed (warnings pass)."""
    from .doctor import doctor_command

    code = doctor_command(_options(**locals()), timeout, json_out)
    if code:
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------- plugins, config


@plugins_app.command("list", cls=Command, epilog=examples("migrate plugins list", "migrate plugins list --json"))
def plugins_list(json_out: JsonOpt = False) -> None:
    """Every installed source, storage and sink, and plugins that failed to load (with the reason)."""
    from .plugins import discover

    registry = discover(EXTRA_PLUGINS)
    data = registry.as_json()
    if json_out:
        _emit_json(data)
        return
    for key in ("sources", "storages", "sinks"):
        _out(f"{key}:")
        for row in data[key]:
            _out(f"  {row['name']:<12} {row['description']}  [{row['distribution']} {row['version']}]")
        if not data[key]:
            _out("  (none)")
    if data["failed"]:
        _out("failed to load:")
        for row in data["failed"]:
            _out(f"  {row['name']:<12} {row['error']}  [{row['distribution']} {row['version']}]")


@config_app.command("show", cls=Command, epilog=examples(
    "migrate config show",
    "migrate config show --source neptune3 --sink pluto --json",
))
def config_show(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    sink: SinkOpt = None,
    data_path: DataPathOpt = None,
    files_path: FilesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The complete effective configuration and where each value came from; secrets masked.

    Every key of [run] and of the chosen plugins' tables, defaults included; each value's origin is the
    comment after it (default, the file and line, env VAR, --set, flag --NAME). The TOML reads back to the
    same values and can be saved as migrate.toml; --json gives {"config": ..., "origins": {"run.workers": ...}}.
    """
    from .configshow import effective, to_toml

    session = Session(_options(**locals()))
    values, origins = effective(session)
    if json_out:
        _emit_json({"config": values, "origins": origins})
    else:
        sys.stdout.write(to_toml(values, origins))


# ------------------------------------------------------------------------------------------- entry point


def _ready(command: str) -> None:
    """Config read, plugins found, components built: the command's start-up is over (a debug event, so
    that time from process start to here can be read off the log; bench/pluto_process.py does)."""
    _imports_done()
    import structlog

    structlog.get_logger("migrate.cli").debug("command_ready", command=command)


def _imports_done() -> None:
    """Where a command has imported what it needs and starts working: from here on garbage is collected.

    Importing a data command's modules (pydantic, pyarrow, numpy, structlog, httpx, the plugins) creates some
    60k objects that stay alive to the end, and the collector's passes over them during the imports cost
    40-60 ms of a 0.4 s start (140 collections; 260 in a venv with pluto-ml). `gc.freeze()` then leaves them
    out of every later pass too. Only in a process of its own (`main()` without argv): callers that run
    main in-process, such as the tests, keep their collector as it was."""
    global _GC_PAUSED
    if _GC_PAUSED:
        _GC_PAUSED = False
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: one-line errors, the documented exit codes."""
    global _GC_PAUSED
    if argv is None:
        # numpy's OpenBLAS starts a thread per core that spins ~80 ms of CPU after the import, on a core
        # the load needs; nothing here multiplies matrices. Before numpy is imported; a user's choice wins.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if argv is None and gc.isenabled():
        gc.disable()
        _GC_PAUSED = True
    try:
        return _main(argv)
    finally:
        _imports_done()


def _main(argv: list[str] | None) -> int:
    command = typer.main.get_command(app)
    completion.prepare("migrate")
    try:
        result = command.main(args=argv, prog_name="migrate", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except MigrateError as exc:
        sys.stderr.write(f"migrate: error: {exc}\n")
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("migrate: interrupted\n")
        code = 130
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            exc.show()
            code = exc.exit_code
        else:
            import traceback

            sys.stderr.write(f"migrate: internal error: {type(exc).__name__}: {exc}\n")
            if os.environ.get("MIGRATE_TRACEBACK"):
                traceback.print_exc()
            code = 1
    sys.stdout.flush()
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
