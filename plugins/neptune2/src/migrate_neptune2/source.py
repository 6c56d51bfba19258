"""The neptune2 source: list runs (or models) and export each with one structure read plus its data.

Request budget per run: 1 structure read (getExperimentAttributes, which carries every atom value), then
ceil(n/page) requests per series, one per file, one per file-series element plus its listing, three for a file
set, one per artifact. No `init_run` (3 requests each) and no per-class container re-initialisation: the run's
uuid comes from the runs table.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any

from migrate_core.api import RunContext, RunWriter, Selection, Source, SourceRun
from migrate_core.errors import UsageError

from . import __version__
from .atoms import ATOM_TYPES, CLASS_OF, FILE_TYPES, SERIES_TYPES, parameter_batch, properties
from .client import ClientSettings, Neptune2Client
from .config import Neptune2Config
from .errors import ApiError, AttributeFetchError, AuthError, Neptune2Error, ProjectError, RunGone
from .files import FileExporter
from .listing import Entry, nql_time, search_entries
from .ordered import ordered_map
from .series import OPERATIONS, read_series, series_batch


class Neptune2Source(Source):
    name = "neptune2"
    version = __version__

    def __init__(self, config: Neptune2Config, client: Neptune2Client | None = None) -> None:
        self.config = config
        self._client = client
        self._client_lock = threading.Lock()
        self._projects: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------------ setup

    @property
    def client(self) -> Neptune2Client:
        with self._client_lock:
            return self._client or self._connect()

    def _connect(self) -> Neptune2Client:
        if self._client is None:
            env = self.config.api_token_env
            token = os.environ.get(env, "").strip()
            if not token:
                raise AuthError(f"no Neptune API token: set ${env} (or point source.neptune2.api_token_env "
                                "at the variable that holds it)")
            c = self.config
            self._client = Neptune2Client(token, ClientSettings(
                token_env=env, requests_per_minute=c.requests_per_minute, max_connections=c.max_connections,
                timeout=c.timeout, retry_budget=c.retry_budget, backoff=c.retry_backoff))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _project_ids(self, selection: Selection) -> list[str]:
        if selection.projects:
            return list(selection.projects)
        names = list(self.config.projects)
        discovered = [n for workspace in self.config.workspaces for n in self.client.list_projects(workspace)]
        if self.config.include:
            discovered = [n for n in discovered if any(re.search(p, n) for p in self.config.include)]
        names += [n for n in discovered if not any(re.search(p, n) for p in self.config.exclude)]
        if not names and not self.config.workspaces:
            raise UsageError("no Neptune project selected: pass -p workspace/project, or set "
                             "source.neptune2.projects or source.neptune2.workspaces")
        return list(dict.fromkeys(names))

    def _project(self, name: str) -> dict[str, Any]:
        if name not in self._projects:
            if name.count("/") != 1:
                raise ProjectError(f"project {name!r} is not of the form workspace/project")
            dto = self.client.get_project(name)
            if dto is None:
                visible = self.client.list_projects()
                shown = ", ".join(visible[:20]) + (f" (and {len(visible) - 20} more)" if len(visible) > 20 else "")
                raise ProjectError(f"Neptune project {name!r} not found or not visible to this token; "
                                   f"visible projects: {shown or 'none'}")
            if int(dto.get("version") or 0) < 2:
                raise ProjectError(f"Neptune project {name!r} is a legacy (v1) project, which the neptune 1.x "
                                   "client cannot read; migrate it to a 2.x project first")
            self._projects[name] = dto
        return self._projects[name]

    # ------------------------------------------------------------------------------------------ listing

    def _query(self, selection: Selection) -> str:
        """The server-side filter: the user's NQL, the trash rule, the creation window and --since/--until."""
        c = self.config
        parts = [c.query.strip() if c.query else ""]
        if c.trashed != "include":
            parts.append(f"`sys/trashed`:bool = {'true' if c.trashed == 'only' else 'false'}")
        for attr, op, value in (("sys/creation_time", ">=", c.created_since), ("sys/creation_time", "<", c.created_until),
                                ("sys/modification_time", ">=", selection.modified_since),
                                ("sys/modification_time", "<", selection.modified_until)):
            if value is not None:
                parts.append(f'`{attr}`:datetime {op} "{nql_time(value)}"')
        return " AND ".join(f"({p})" for p in parts if p)

    def list_runs(self, selection: Selection) -> Iterator[SourceRun]:
        names = [n for n in self._project_ids(selection) if selection.wants_project(n)]
        projects = {name: self._project(name) for name in names}  # every project checked before any run moves
        for name, dto in projects.items():
            for entry in self._entries(dto, selection):
                if selection.wants_run(entry.sys_id):
                    yield SourceRun(
                        project_id=name,
                        run_id=entry.sys_id,
                        modification_time=entry.modification_time,
                        info={"uuid": entry.uuid, "type": entry.type, "project_uuid": dto["id"]},
                    )

    def _entries(self, dto: dict[str, Any], selection: Selection) -> Iterator[Entry]:
        c = self.config
        if c.objects == "runs":
            yield from search_entries(self.client, dto["id"], ["run"], self._query(selection), c.runs_page_size)
            return
        models = list(search_entries(self.client, dto["id"], ["model"], self._query(selection), c.runs_page_size))
        yield from models
        wanted = {m.sys_id for m in models}
        trash = "" if c.trashed == "include" else f"`sys/trashed`:bool = {'true' if c.trashed == 'only' else 'false'}"
        for version in search_entries(self.client, dto["id"], ["modelVersion"], trash, c.runs_page_size):
            if version.model_id in wanted:
                yield version

    # ------------------------------------------------------------------------------------------ export

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        client = self.client
        uuid = run.info.get("uuid") or self._lookup_uuid(run)
        project_uuid = run.info.get("project_uuid") or self._project(run.project_id)["id"]
        structure = self._structure(run, uuid)
        wanted_classes = set(self.config.classes)
        atoms, series, files = [], [], []
        for attribute in structure.get("attributes") or []:
            api_type, path = attribute.get("type"), attribute.get("name")
            cls = CLASS_OF.get(api_type)
            if cls is None:
                ctx.report.lost(f"attributes of type {api_type!r} (unknown to the 2.x source)")
                continue
            if cls not in wanted_classes or not selection.wants_attribute(path):
                continue
            (atoms if api_type in ATOM_TYPES else series if api_type in SERIES_TYPES else files).append(attribute)

        batch = parameter_batch(run.project_id, run.run_id, atoms, ctx.report)
        if batch is not None:
            self._write(writer, ctx, batch)
        # the first page of the next few series is requested while one is written: most series fit in one page
        for attribute, first in ordered_map(lambda a: (a, self._first_page(client, uuid, a, ctx)), series,
                                            self.config.series_prefetch):
            self._guarded(ctx, attribute, lambda a=attribute, f=first: self._series(client, run, uuid, a, f, writer,
                                                                                    ctx))
        exporter = FileExporter(client, writer, ctx, project_uuid, self.config.series_page_size,
                                self.config.file_set_poll_timeout, self.config.series_prefetch)
        for attribute in files:
            self._guarded(ctx, attribute, lambda a=attribute: self._file(exporter, uuid, a, writer, ctx))

    def _lookup_uuid(self, run: SourceRun) -> str:
        try:
            return str(self.client.json("getExperiment", {"experimentId": f"{run.project_id}/{run.run_id}"})["id"])
        except ApiError as exc:
            if exc.status == 404:
                raise RunGone(f"run {run.run_id} no longer exists in {run.project_id}") from None
            raise

    def _structure(self, run: SourceRun, uuid: str) -> dict[str, Any]:
        try:
            structure = self.client.json("getExperimentAttributes", {"experimentId": uuid})
        except ApiError as exc:
            if exc.status == 404:
                raise RunGone(f"run {run.run_id} was deleted while it was being exported") from None
            raise
        if structure.get("trashed") and self.config.trashed == "exclude":
            raise RunGone(f"run {run.run_id} was moved to the trash during the export; not exported "
                          "(set source.neptune2.trashed=include to export trashed runs)")
        return structure

    def _guarded(self, ctx: RunContext, attribute: dict[str, Any], work: Any) -> None:
        """Run one attribute's export; a failure fails the run unless the user chose to skip and count it."""
        ctx.check_cancelled()
        path = attribute.get("name")
        try:
            work()
        except (Neptune2Error, ValueError) as exc:
            if isinstance(exc, ApiError) and exc.status == 404 and exc.error_type == "EXPERIMENT_NOT_FOUND":
                raise RunGone(f"the run was deleted while it was being exported ({path!r} answered 404)") from None
            if isinstance(exc, RunGone) or not self.config.skip_failed_attributes:
                if isinstance(exc, AttributeFetchError | RunGone):
                    raise
                raise AttributeFetchError(f"attribute {path!r} could not be read: {exc}") from exc
            ctx.report.lost("attributes that failed to fetch")
            ctx.report.note(f"{path}: {' '.join(str(exc).split())[:300]}")

    def _first_page(self, client: Neptune2Client, uuid: str, attribute: dict[str, Any], ctx: RunContext) -> Any:
        """The series' first page, or the exception that stopped it (raised later, inside `_guarded`)."""
        try:
            return client.json(OPERATIONS[SERIES_TYPES[attribute["type"]]],
                               {"experimentId": uuid, "attribute": attribute["name"],
                                "limit": self.config.series_page_size, "offset": 0}, cancelled=lambda: ctx.cancelled)
        except Exception as exc:  # noqa: BLE001 - handed back to the attribute's own error handling
            return exc

    def _series(self, client: Neptune2Client, run: SourceRun, uuid: str, attribute: dict[str, Any], first: Any,
                writer: RunWriter, ctx: RunContext) -> None:
        if isinstance(first, BaseException):
            raise first
        kind = SERIES_TYPES[attribute["type"]]
        path = attribute["name"]
        for points in read_series(client, uuid, path, kind, self.config.series_page_size, self.config.batch_rows,
                                  cancelled=lambda: ctx.cancelled, prefetch=self.config.series_prefetch,
                                  first=first):
            ctx.check_cancelled()
            self._write(writer, ctx, series_batch(run.project_id, run.run_id, path, kind, points))

    def _file(self, exporter: FileExporter, uuid: str, attribute: dict[str, Any], writer: RunWriter,
              ctx: RunContext) -> None:
        kind, path, props = FILE_TYPES[attribute["type"]], attribute["name"], properties(attribute)
        if kind == "file":
            batch = exporter.file(uuid, path, props)
        elif kind == "file_series":
            batch = exporter.file_series(uuid, path, props)
        elif kind == "file_set":
            batch = exporter.file_set(uuid, path)
        else:
            batch = exporter.artifact(path, props)
        if batch is not None:
            self._write(writer, ctx, batch)

    @staticmethod
    def _write(writer: RunWriter, ctx: RunContext, batch: Any) -> None:
        writer.write(batch)
        ctx.report.add(rows=batch.num_rows)
        ctx.progress(batch.num_rows)
