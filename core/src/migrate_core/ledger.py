"""The ledger: per (run, sink target) load state, so every command resumes where it stopped.

States: pending -> in_progress -> done | failed | deferred. An `in_progress` row found at start means the
previous process died mid-run; it is loaded again (sinks are idempotent). `deferred` is a fork that waits
for its parent to reach the sink; it loads at the next command that can load the parent first. A `done`
row carries the `export_id` of the stored export it loaded, so a re-exported run is loaded again. Each row
keeps when its last load started (`started_at`, set on `in_progress`) beside when it last changed
(`updated_at`): `migrate report` draws the migration's timeline from them. SQLite gives atomic, durable updates
from many worker threads and stays fast at tens of thousands of runs, where rewriting one JSON file per
state change would not.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER_FILE = "migrate-ledger.sqlite"
STATES = ("pending", "in_progress", "done", "failed", "deferred")


@dataclass(frozen=True)
class Entry:
    project_id: str
    run_id: str
    target: str
    state: str
    error: str | None
    counts: dict[str, Any]
    updated_at: float
    export_id: str | None = None
    started_at: float | None = None  # when the last load of the run began (None: never started, or an old ledger)


class Ledger:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LEDGER_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        # WAL: a commit is one append and one fsync of the log (0.3 ms here) instead of a rollback journal
        # created, synced and deleted per state change (2.5 ms, under the lock every loading thread shares);
        # synchronous=FULL keeps every committed state across a power loss. Where WAL is unavailable
        # (some network filesystems) SQLite keeps its rollback journal, which is slower and as safe.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS loads (
                project_id TEXT NOT NULL, run_id TEXT NOT NULL, target TEXT NOT NULL,
                state TEXT NOT NULL, error TEXT, counts TEXT NOT NULL DEFAULT '{}',
                updated_at REAL NOT NULL, PRIMARY KEY (project_id, run_id, target))"""
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(loads)")}
        if "export_id" not in columns:  # a ledger written before loads recorded what they loaded
            self._db.execute("ALTER TABLE loads ADD COLUMN export_id TEXT")
        if "started_at" not in columns:  # a ledger written before loads recorded when they started
            self._db.execute("ALTER TABLE loads ADD COLUMN started_at REAL")

    def get(self, project_id: str, run_id: str, target: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state, error, counts, updated_at, export_id, started_at FROM loads"
                " WHERE project_id=? AND run_id=? AND target=?",
                (project_id, run_id, target),
            ).fetchone()
        if row is None:
            return None
        return Entry(project_id, run_id, target, row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])

    def set(
        self, project_id: str, run_id: str, target: str, state: str, error: str | None = None,
        counts: dict[str, Any] | None = None, export_id: str | None = None,
    ) -> None:
        """Record a state; `export_id` (kept from the row's last `done` unless given) names what was loaded.
        `in_progress` also stamps `started_at`; every other state keeps the stamp of the load it ends."""
        if state not in STATES:
            raise ValueError(f"unknown ledger state {state!r}")
        now = time.time()
        started = now if state == "in_progress" else None
        with self._lock:
            self._db.execute(
                """INSERT INTO loads (project_id, run_id, target, state, error, counts, updated_at, export_id,
                                      started_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (project_id, run_id, target) DO UPDATE SET
                   state=excluded.state, error=excluded.error, counts=excluded.counts,
                   updated_at=excluded.updated_at, export_id=coalesce(excluded.export_id, loads.export_id),
                   started_at=coalesce(excluded.started_at, loads.started_at)""",
                (project_id, run_id, target, state, error, json.dumps(counts or {}), now, export_id, started),
            )

    def entries(self, target: str | None = None) -> list[Entry]:
        query = ("SELECT project_id, run_id, target, state, error, counts, updated_at, export_id, started_at"
                 " FROM loads")
        args: tuple[Any, ...] = ()
        if target is not None:
            query += " WHERE target=?"
            args = (target,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY project_id, run_id", args).fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
