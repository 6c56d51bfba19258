"""What a run's load put into Pluto: kept in Pluto itself (the truth) and cached on this machine.

Pluto deduplicates metric points per step, but never data lines (histograms, string series), console lines
or files, and it cannot be asked for data lines at all. So every load records, per tracked attribute, how
many of its leading rows (in storage order) Pluto acknowledged and a digest of those rows. The record lives
in the run's own config under `_migrate.load` (`LoadRecord`), written after each acknowledged data or log
request and completed at the end with a digest of every series. A copy, plus what only this machine
needs (the Pluto run id, presigned upload URLs), is cached in one JSON file per run (`RunState`).

A lost, stale or corrupt cache is never a reason to send anything twice: the loader reads the record back
from Pluto and trusts it over the cache whenever the two disagree on what was loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrate_core.format import sanitize_path_part
from migrate_core.manifest import write_json_atomic

VERSION = 2
DIGEST = "sha256/64"  # digest.py
RECORD_KEY = "load"  # config["_migrate"]["load"]


@dataclass
class LoadRecord:
    """What Pluto holds of one run, in terms of the stored export it came from."""

    export: str | None = None  # StoredRun.export_id of the content loaded
    complete: bool = False
    plan: dict[str, Any] | None = None  # the step plan every sent point used
    tracked: dict[str, list[Any]] = field(default_factory=dict)  # path -> [rows acknowledged, digest of them]
    metrics: dict[str, list[Any]] = field(default_factory=dict)  # encoded name -> [rows, digest] (when complete)
    lines: int = 0  # console lines acknowledged
    pending: str | None = None  # JSON of a request sent but not yet acknowledged (see RunLoader._tracked)
    digest: str = DIGEST  # how the digests above were made; a record made another way cannot be compared

    def as_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> LoadRecord | None:
        migrate = config.get("_migrate") if isinstance(config, dict) else None
        data = migrate.get(RECORD_KEY) if isinstance(migrate, dict) else None
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                # a run created by a load that sent nothing tracked yet carries only `created`
                export=data.get("export") or data.get("created"),
                complete=bool(data.get("complete")),
                plan=data.get("plan") if isinstance(data.get("plan"), dict) else None,
                tracked={str(k): list(v) for k, v in (data.get("tracked") or {}).items()
                         if isinstance(v, list) and len(v) == 2},
                metrics={str(k): list(v) for k, v in (data.get("metrics") or {}).items()
                         if isinstance(v, list) and len(v) == 2},
                lines=int(data.get("lines") or 0),
                pending=data.get("pending") if isinstance(data.get("pending"), str) else None,
                digest=str(data.get("digest") or DIGEST),
            )
        except (TypeError, ValueError):
            return None


@dataclass
class RunState:
    external_id: str  # of the current generation
    project: str
    pluto_id: int | None = None
    generation: int = 0  # 0: the run's first Pluto run; n: the n-th replacement (`--force`)
    record: LoadRecord = field(default_factory=LoadRecord)
    file_sub: dict[str, int] = field(default_factory=dict)  # members of a directory row (file set) uploaded
    pending: dict[str, Any] | None = None  # an upload in flight (presigned URL), or a tracked request
    version: int = VERSION

    @property
    def complete(self) -> bool:
        return self.record.complete


class StateStore:
    """One JSON file per (target, run) under the storage's state directory for this plugin."""

    def __init__(self, root: Path, target: str) -> None:
        digest = hashlib.sha256(target.encode()).hexdigest()[:12]
        self.root = Path(root) / digest

    def path(self, project_id: str, run_id: str) -> Path:
        return self.root / sanitize_path_part(project_id) / f"{sanitize_path_part(run_id)}.json"

    def load(self, project_id: str, run_id: str) -> RunState | None:
        """The cached state, or None when there is none or it cannot be trusted (unreadable, another
        version): the loader then reads what was loaded back from Pluto."""
        try:
            data = json.loads(self.path(project_id, run_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        try:
            record = LoadRecord.from_config({"_migrate": {RECORD_KEY: data.get("record")}}) or LoadRecord()
            return RunState(
                external_id=str(data["external_id"]),
                project=str(data["project"]),
                pluto_id=int(data["pluto_id"]) if data.get("pluto_id") is not None else None,
                generation=int(data.get("generation") or 0),
                record=record,
                file_sub={str(k): int(v) for k, v in (data.get("file_sub") or {}).items()},
                pending=data.get("pending") if isinstance(data.get("pending"), dict) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, project_id: str, run_id: str, state: RunState) -> None:
        write_json_atomic(self.path(project_id, run_id), asdict(state))
