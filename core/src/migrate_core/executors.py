"""Where the runs of `export`, `load` and `run` are processed: `--executor threads|processes|dask`.

The unit of work is one run. The orchestrator (this process) lists, decides skips, orders parents before forks,
writes the ledger and the summary; an executor only runs `export_one` / `load_work` for one run and hands the
Outcome back.

- threads (default): two thread pools in this process, as always.
- processes: a local process pool (`spawn`) of `--workers` processes, for sources and sinks bound by one core.
- dask: a Dask cluster (`distributed`): `--dask-address tcp://HOST:PORT` for a running scheduler, else a
  LocalCluster on this machine. Every worker needs migrate and the plugins installed, and must reach the
  storage path (shared disk or s3://) and the source/sink servers.

Components (source, storage, sink) cannot be pickled, so a task carries a `WorkerSpec`: the effective config
as plain data and the plugin names. A worker process builds the components from it once and keeps them for the
next tasks of the same command (`_components`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from .api import Selection, SourceRun, StoredRun
    from .orchestrator import Orchestrator, Outcome

NAMES = ("threads", "processes", "dask")


class Executor:
    """Runs one run's export or load somewhere and returns a concurrent.futures Future of its Outcome."""

    name = "threads"
    remote = False  # True: the work happens in other processes (outcomes are counted and ledgered on return)

    def start(self, orch: Orchestrator) -> None:
        self.orch = orch

    def submit_export(self, run: SourceRun) -> Future[Outcome]:
        raise NotImplementedError

    def submit_load(self, run: StoredRun) -> Future[Outcome]:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


class ThreadExecutor(Executor):
    """Today's behaviour: `export_workers` export threads and `workers` load threads in this process."""

    def start(self, orch: Orchestrator) -> None:
        super().start(orch)
        self.export_pool = ThreadPoolExecutor(orch.export_workers, thread_name_prefix="migrate-export")
        self.load_pool = ThreadPoolExecutor(orch.workers, thread_name_prefix="migrate-load")

    def submit_export(self, run: SourceRun) -> Future[Outcome]:
        return self.export_pool.submit(self.orch.export_one, run, True)

    def submit_load(self, run: StoredRun) -> Future[Outcome]:
        return self.load_pool.submit(self.orch.load_one, run)

    def shutdown(self) -> None:
        self.export_pool.shutdown(wait=True, cancel_futures=True)
        self.load_pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True, repr=False)
class WorkerSpec:
    """What a worker process needs to rebuild this command's components (plain, picklable data)."""

    token: str  # one per command: a worker keeps the components it built for it
    config: dict[str, Any]  # the merged config (file, env, --set, flags): may hold secrets, never printed
    source: str | None
    storage: str
    sink: str | None
    selection: Selection
    force: bool = False
    refresh: bool = False
    log_level: str = "warning"

    def __repr__(self) -> str:  # a scheduler may log a task's arguments: never the config's secrets
        return f"WorkerSpec({self.token}, source={self.source!r}, storage={self.storage!r}, sink={self.sink!r})"


class RemoteExecutor(Executor):
    """Tasks to a concurrent.futures pool of other processes (a local process pool or Dask's executor)."""

    remote = True

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.pool: PoolExecutor | None = None

    def make_pool(self, workers: int) -> PoolExecutor:
        raise NotImplementedError

    def start(self, orch: Orchestrator) -> None:
        super().start(orch)
        self.pool = self.make_pool(orch.workers)

    def submit_export(self, run: SourceRun) -> Future[Outcome]:
        assert self.pool is not None
        return self.pool.submit(remote_export, self.spec, run)

    def submit_load(self, run: StoredRun) -> Future[Outcome]:
        assert self.pool is not None
        if not self.orch.cancel.is_set():
            self.orch.load_started(run)  # the ledger is written here, never in a worker
        return self.pool.submit(remote_load, self.spec, run)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # the orchestrator cancelled the futures it no longer wants
            self.pool = None


class ProcessExecutor(RemoteExecutor):
    name = "processes"

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def make_pool(self, workers: int) -> PoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: this process runs threads (progress, SDK clients) that a fork would copy mid-step
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def make_executor(name: str, address: str | None, spec: WorkerSpec) -> Executor:
    if name == "threads":
        return ThreadExecutor()
    if name == "processes":
        return ProcessExecutor(spec)
    if name == "dask":
        try:
            from .dask import DaskExecutor
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in ("distributed", "dask"):
                raise
            raise UsageError("--executor dask needs the `distributed` package: pip install 'migrate-ml[dask]'") \
                from None
        return DaskExecutor(spec, address)
    raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(NAMES)}")


def new_token() -> str:
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------- in the worker process

_BUILT: OrderedDict[str, Orchestrator] = OrderedDict()  # token -> the components of that command
_KEEP = 4  # a long-lived Dask worker serves many commands: the oldest components are closed
_LOCK = threading.Lock()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _components(spec: WorkerSpec) -> Orchestrator:
    with _LOCK:
        orch = _BUILT.get(spec.token)
        if orch is None:
            orch = _build(spec)
            _BUILT[spec.token] = orch
            while len(_BUILT) > _KEEP:
                _close(_BUILT.popitem(last=False)[1])
        return orch


def _build(spec: WorkerSpec) -> Orchestrator:
    from . import config as cfg
    from .logsetup import configure_logging, keep_stdout_for_results
    from .orchestrator import Orchestrator
    from .plugins import discover

    # our log lines go to this process's stderr (a local pool shares the command's stdout, kept for --json)
    configure_logging(spec.log_level, "json", stream=sys.stderr)
    registry = discover()
    config = cfg.Config(layers=[cfg.Layer(spec.config, "the command's config")], merged=spec.config)

    def build(kind: str, name: str | None) -> Any:
        if not name:
            return None
        component_spec = registry.get(kind, name)  # type: ignore[arg-type]
        component = component_spec.factory(cfg.validate(config, component_spec.config_model, (kind, name)))
        if not getattr(component, "name", ""):
            component.name = name
        return component

    storage = build("storage", spec.storage)
    source = build("source", spec.source)
    sink = build("sink", spec.sink)
    keep_stdout_for_results()
    return Orchestrator(storage, source=source, sink=sink, source_name=spec.source or "",
                        selection=spec.selection, force=spec.force, refresh=spec.refresh)


def _close(orch: Orchestrator) -> None:
    for component in (orch.source, orch.sink, orch.storage):
        if component is not None:
            with contextlib.suppress(Exception):  # closing an old command's components is best effort
                component.close()


def _finish(outcome: Outcome) -> Outcome:
    outcome.worker = worker_id()
    return outcome


def _remote(spec: WorkerSpec, project_id: str, run_id: str, stage: str, work: Callable[[Any], Outcome]) -> Outcome:
    """`work(orchestrator)` for one run in a worker process; components that cannot start fail that run."""
    from .orchestrator import Outcome, describe_error

    try:
        orch = _components(spec)
    except Exception as exc:  # noqa: BLE001 - said per run, like any failure
        return _finish(Outcome(project_id, run_id, stage, "failed",
                               f"the worker could not start the components: {describe_error(exc)}"))
    return _finish(work(orch))


def remote_export(spec: WorkerSpec, run: SourceRun) -> Outcome:
    """One run's export in a worker process (its skip was decided by the orchestrator)."""
    return _remote(spec, run.project_id, run.run_id, "export", lambda orch: orch.export_one(run, True))


def remote_load(spec: WorkerSpec, stored: StoredRun) -> Outcome:
    """One run's load in a worker process; the orchestrator writes its ledger row."""
    return _remote(spec, stored.project_id, stored.run_id, "load", lambda orch: orch.load_work(stored))
