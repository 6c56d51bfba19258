"""Our per-run record of what Pluto already acknowledged, for the kinds Pluto never deduplicates.

Rows of each kind (metrics, data, logs, files) are numbered in storage order; `sent[kind]` is how many
the server acknowledged. Before a request we write an intent (`pending`), after its 200 we advance
`sent` and clear the intent, each time atomically (tmp + fsync + rename). A run killed between the
server's commit and our write leaves an intent that the next load reconciles against the server
(log count, file listing) before sending anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrate_core.format import sanitize_path_part
from migrate_core.manifest import write_json_atomic

KINDS = ("metrics", "data", "logs", "files")
VERSION = 1


@dataclass
class RunState:
    external_id: str
    project: str
    pluto_id: int | None = None
    plan: dict[str, Any] | None = None
    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    file_sub: int = 0  # files of a directory row (file_set) already uploaded
    big_strings: int = 0  # over-long string parameters already uploaded as files
    pending: dict[str, Any] | None = None
    counts: dict[str, Any] = field(default_factory=dict)  # what the load carried, for verify
    complete: bool = False
    version: int = VERSION


class StateStore:
    """One JSON file per (target, run) under the storage's state directory for this plugin."""

    def __init__(self, root: Path, target: str) -> None:
        digest = hashlib.sha256(target.encode()).hexdigest()[:12]
        self.root = Path(root) / digest

    def path(self, project_id: str, run_id: str) -> Path:
        return self.root / sanitize_path_part(project_id) / f"{sanitize_path_part(run_id)}.json"

    def load(self, project_id: str, run_id: str) -> RunState | None:
        try:
            data = json.loads(self.path(project_id, run_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: start over; metrics dedup and reconciliation keep it safe
        if data.get("version") != VERSION:
            return None
        known = {k: v for k, v in data.items() if k in RunState.__dataclass_fields__}
        state = RunState(**known)
        state.sent = {kind: int(state.sent.get(kind, 0)) for kind in KINDS}
        return state

    def save(self, project_id: str, run_id: str, state: RunState) -> None:
        write_json_atomic(self.path(project_id, run_id), asdict(state))
