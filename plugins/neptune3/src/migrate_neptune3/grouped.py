"""Small runs read together: one request per attribute class for a group of runs instead of one per run.

The 3.x read API accepts many runs in one attribute-values, float-series or series request, and answers per
run; neptune-query's own `fetch_metrics` relies on it. Per-run requests are what bounds a project of many
small runs (each request costs the client about as much CPU as a small run's whole decoding), so the
orchestrator tells the source which runs it is about to export (`Source.prepare`, skips already decided) and
a background thread reads them in groups of `group_runs` (5 requests for 16 small runs, not 16 x 5):

1. the union of the group's attribute definitions (the API answers one union, not per run);
2. the values of all those names for every run of the group. The answer is per run and carries each
   attribute's type, so it tells exactly which attributes each run has, like its own definitions would
   (neptune-query reads types from the same answers, `experimentState` included). If some defined name comes
   back for no run, the server does not serve that type here and the runs ask for their own definitions;
3. the first page of every (run, float series) pair, at most `GROUP_SERIES` pairs per request and
   `GROUP_FLOAT_POINTS` points per series, `GROUP_REQUESTS` requests per group;
4. the first page of every (run, string / histogram / file series) pair, likewise;
5. `sys/id` of every run: a run that no longer answers was deleted during the group's reads (deleted runs
   answer empty series, not errors) and fails instead of being stored truncated.

`export_run` then waits for its group, takes what the group read for it, and fetches the rest itself:
series past their first page, attributes over the group's request budget, everything after a group request
failed (grouping is then switched off: a failure belongs to a run). A run that read anything itself checks
once more at its end that it still exists. The rows are the same either way (tested): a group is only ever
a shortcut, never the only path. Runs with more than `GROUP_VALUES / group_runs` attributes are read alone.
At most `HELD_GROUPS` groups are held; an older group's data is dropped (its runs then read everything
themselves), so memory stays bounded even when runs are prepared and never exported.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from migrate_core.api import RunContext, Selection, SourceRun

from .atoms import CLASS_OF, PARAMETER_TYPES, name_chunks
from .client import CURRENT_RUN, Neptune3Client, RunRetries
from .config import Neptune3Config
from .series import FloatPage, float_answer, float_request, series_answer, series_request

log = structlog.get_logger("migrate.neptune3")

GROUP_SERIES = 100  # (run, series) pairs in one group series request
GROUP_FLOAT_POINTS = 1_000  # first-page points per float series in a group request; longer ones page on alone
GROUP_REQUESTS = 4  # requests per class per group at most: bounds what a group holds; the rest is read per run
HELD_GROUPS = 4  # groups whose data waits for their runs' export
GROUP_THREADS = 2  # groups read at once: one round trip of the next group hides behind this one's
GROUP_VALUES = 20_000  # (run, attribute) values in one group at most; wider runs are read alone
SERIES_WIRES = ("stringSeries", "histogramSeries", "fileRefSeries")

Key = tuple[str, str]


@dataclass
class Prefetched:
    """What a group read for one run. `*_names` are the attributes it covered: the rest is read per run."""

    definitions: list[tuple[str, str]] | None = None  # (name, wire type) of the run's attributes; None: ask
    gone: bool = False  # the run no longer existed after the group's reads
    values: dict[str, Any] = field(default_factory=dict)  # name -> ProtoAttributeDTO of its parameters and files
    float_names: frozenset[str] = frozenset()
    floats: dict[str, list[FloatPage]] = field(default_factory=dict)
    float_after: dict[str, float] = field(default_factory=dict)  # last step read, for series with more pages
    series_names: frozenset[str] = frozenset()
    series: dict[str, list[Any]] = field(default_factory=dict)  # name -> [ProtoSeriesValuesDTO]
    series_after: dict[str, str] = field(default_factory=dict)  # searchAfter token, for series with more pages
    retries: int = 0  # requests neptune-query retried while the group was read
    count_retries: bool = False  # the one run of its group that counts them in the live progress


class _Group:
    def __init__(self, project: str, runs: list[tuple[Key, str]], selection: Selection) -> None:
        self.project = project
        self.runs = runs  # (key, sys/id)
        self.selection = selection
        self.results: dict[Key, Prefetched] = {}
        self.done = threading.Event()
        self.dropped = False


class GroupReader:
    """Reads prepared runs in groups in `GROUP_THREADS` background threads; `take` hands a run its part."""

    def __init__(self, client: Callable[[], Neptune3Client], config: Neptune3Config) -> None:
        self._client = client
        self.config = config
        self._lock = threading.Lock()
        self._groups: list[_Group] = []  # held, oldest first
        self._by_run: dict[Key, _Group] = {}
        self._queue: queue.Queue[_Group | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.disabled: str | None = None  # why grouping was switched off (a group request failed)

    # ------------------------------------------------------------------ the orchestrator's side

    def add(self, runs: Iterable[SourceRun], selection: Selection) -> None:
        by_project: dict[str, list[tuple[Key, str]]] = {}
        for run in runs:
            sys_id = run.info.get("sys_id")
            if sys_id:
                by_project.setdefault(run.project_id, []).append((run.key, str(sys_id)))
        size = max(1, self.config.group_runs)
        with self._lock:
            if self._closed or self.disabled:
                return
            for project, members in by_project.items():
                for i in range(0, len(members), size):
                    chunk = members[i:i + size]
                    if len(chunk) < 2:
                        continue  # a group of one saves no request: the run reads alone, starting its series sooner
                    group = _Group(project, chunk, selection)
                    self._groups.append(group)
                    for key, _ in group.runs:
                        self._by_run[key] = group
                    self._queue.put(group)
            while len(self._groups) > HELD_GROUPS:
                self._drop(self._groups.pop(0))
            if not self._threads:
                for _ in range(GROUP_THREADS):
                    thread = threading.Thread(target=self._work, name="neptune3-groups", daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _drop(self, group: _Group) -> None:
        group.dropped = True
        for key, _ in group.runs:
            if self._by_run.get(key) is group:
                del self._by_run[key]
        group.results.clear()
        group.done.set()

    def take(self, run: SourceRun, ctx: RunContext) -> Prefetched | None:
        """The run's part of its group (waiting for the group's requests), or None: read it all per run."""
        with self._lock:
            group = self._by_run.pop(run.key, None)
        if group is None:
            return None
        while not group.done.wait(0.1):
            ctx.check_cancelled()
        with self._lock:
            part = group.results.pop(run.key, None)
            if group in self._groups and not any(key in self._by_run for key, _ in group.runs):
                self._groups.remove(group)
        return part

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for group in self._groups:
                self._drop(group)
            self._groups.clear()
            self._by_run.clear()
        for _ in self._threads:
            self._queue.put(None)

    # ------------------------------------------------------------------ the background thread

    def _work(self) -> None:
        while True:
            group = self._queue.get()
            if group is None:
                return
            if group.dropped or self.disabled:
                group.done.set()
                continue
            retries = RunRetries()
            scope = CURRENT_RUN.set(retries)
            try:
                results = self._read(group)
            except Exception as exc:  # noqa: BLE001 - a shortcut failed: its runs read everything themselves
                self._disable(exc)
                results = {}
            finally:
                CURRENT_RUN.reset(scope)
            for part in results.values():
                part.retries = retries.count
            if results:
                results[group.runs[0][0]].count_retries = True
            with self._lock:
                if not group.dropped:
                    group.results = results
            group.done.set()

    def _disable(self, exc: Exception) -> None:
        """A group request failed (after neptune-query's retries): read every later run alone, where a failure
        is the run's own, instead of paying the retry budget twice per group."""
        if self.disabled is None:
            self.disabled = " ".join(str(exc).split())[:300]
            log.warning("neptune3_groups_off", reason=self.disabled,
                        detail="a request for a group of runs failed; each run is now read alone")

    def _read(self, group: _Group) -> dict[Key, Prefetched]:
        client = self._client()
        config = self.config
        project = group.project
        sys_ids = [sys_id for _, sys_id in group.runs]
        key_of = {sys_id: key for key, sys_id in group.runs}
        union = client.attribute_definitions_union(project, sys_ids)
        types: dict[str, set[str]] = {}
        for name, wire in union:
            types.setdefault(name, set()).add(wire)
        classes = set(config.classes)
        # what a run reads alone would look at: selected names of a chosen class, or of a type we cannot carry
        # (counted as lost); `--attributes` and `--classes` keep the rest from ever being asked for
        names = [name for name, wires in types.items() if group.selection.wants_attribute(name)
                 and any(CLASS_OF.get(w) is None or CLASS_OF.get(w) in classes for w in wires)]
        chunks = list(name_chunks(names, config.max_attribute_values))
        if not names or len(chunks) > GROUP_REQUESTS or len(names) * len(sys_ids) > GROUP_VALUES:
            return {}  # wide runs gain nothing from a group: each reads everything itself
        found: dict[Key, dict[str, Any]] = {key: {} for key, _ in group.runs}
        for chunk in chunks:
            for sys_id, attribute in client.attribute_values_by_run(project, sys_ids, chunk,
                                                                    config.max_attribute_values):
                key = key_of.get(sys_id)
                if key is not None:
                    found[key][attribute.name] = attribute
        answered = {name for attributes in found.values() for name in attributes}
        if answered != set(names):
            # an attribute every run lacks in the values answer, though one of them defines it: the server does
            # not serve its type here, so the runs' own definitions must say what they hold
            log.debug("group_values_incomplete", project=project, missing=sorted(set(names) - answered)[:5])
            return {}
        results: dict[Key, Prefetched] = {}
        floats: list[tuple[Key, str, str]] = []
        others: list[tuple[Key, str, str]] = []
        for key, sys_id in group.runs:
            attributes = found[key]
            definitions = sorted((name, str(attr.type)) for name, attr in attributes.items())
            results[key] = Prefetched(definitions=definitions,
                                      values={n: a for n, a in attributes.items()
                                              if a.type in PARAMETER_TYPES or a.type == "fileRef"})
            for name, wire in definitions:
                cls = CLASS_OF.get(wire)
                if cls is None or cls not in classes or not group.selection.wants_attribute(name):
                    continue
                if wire == "floatSeries":
                    floats.append((key, sys_id, name))
                elif wire in SERIES_WIRES:
                    others.append((key, sys_id, name))
        if floats and not group.dropped:
            self._first_pages(client, project, floats, results, floats=True)
        if others and not group.dropped:
            self._first_pages(client, project, others, results, floats=False)
        # the last group request proves each run still existed after all of the group's reads (a run deleted
        # meanwhile answers empty series, not errors)
        present = {sys_id for sys_id, _ in client.attribute_values_by_run(project, sys_ids, ["sys/id"], len(sys_ids))}
        for key, sys_id in group.runs:
            results[key].gone = sys_id not in present
        return results

    def _first_pages(self, client: Neptune3Client, project: str, pairs: list[tuple[Key, str, str]],
                     results: dict[Key, Prefetched], floats: bool) -> None:
        """The first page of each (run, series) pair, `GROUP_SERIES` pairs per request, and where each longer
        series goes on; float series through series/float, the others through series."""
        lineage = self.config.materialise_lineage
        covered: dict[Key, set[str]] = {key: set() for key in results}
        for start in range(0, min(len(pairs), GROUP_SERIES * GROUP_REQUESTS), GROUP_SERIES):
            chunk = pairs[start:start + GROUP_SERIES]
            make = float_request if floats else series_request
            requests = {str(i): make(str(i), project, sys_id, name, lineage) for i, (_, sys_id, name) in enumerate(chunk)}
            found: list[tuple[str, Any]]
            if floats:
                points = min(self.config.page_points, GROUP_FLOAT_POINTS * len(chunk))
                pages, following = float_answer(client, requests, points)
                found = [(page.request_id, page) for page in pages]
            else:
                answer, following = series_answer(client, requests)
                found = [(request_id, values) for request_id, _attribute, values in answer]
            for request_id, page in found:
                key, _, name = chunk[int(request_id)]
                (results[key].floats if floats else results[key].series).setdefault(name, []).append(page)
            for request_id, request in following.items():
                key, _, name = chunk[int(request_id)]
                if floats:
                    results[key].float_after[name] = float(request["afterStep"])
                else:
                    results[key].series_after[name] = str(request["searchAfter"]["token"])
            for key, _, name in chunk:
                covered[key].add(name)
        for key, part in results.items():
            if floats:
                part.float_names = frozenset(covered[key])
            else:
                part.series_names = frozenset(covered[key])
