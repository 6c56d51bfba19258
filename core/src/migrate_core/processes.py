"""`migrate export --processes N`: one export split over N processes, one shard each, into one storage.

One process runs its `--workers` threads one at a time (the GIL), so an export of many small runs is bound
by one core. Here the command re-runs itself N times as `export --shard i/N --json` (the runs split by a
stable hash, never overlapping), forwards the children's log lines, drives one progress display from their
`run_*` events, and merges their JSON summaries into the summary one process would have printed.

- Ctrl+C reaches every child (the terminal signals the whole process group; a SIGINT sent to this process
  alone is forwarded); each stops at its next batch, and the merged summary says "interrupted" (exit 130).
- A child that dies without a summary fails the command (exit 1) with its last error lines; the other
  children's runs still count, and a re-run resumes every shard.
- Lifecycle hooks run here, once for the whole command; `migrate_on_run_error` runs in the child that
  met the error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import structlog

from .progress import Progress

log = structlog.get_logger("migrate")

CHILD_ENV = "MIGRATE_PROCESS_CHILD"  # set in the children: they skip the command-level hooks
ERROR_PREFIX = "migrate: error:"  # how the CLI reports an error that stops a command (exit code 2 or more)
RUN_EVENTS = {"run_done": True, "run_skipped": True, "run_failed": False, "run_cancelled": False}


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


class ChildProgress(Progress):
    """A child's progress: its totals and live counters (e.g. retries) go to the parent as log records; its
    runs and rows reach the parent in its `run_*` events."""

    def set_total(self, total_runs: int, final: bool = True) -> None:
        log.info("progress_total", runs=total_runs, final=final)

    def expect_rows(self, count: int | None, stage: str, estimate: bool = False) -> None:
        log.info("progress_rows_total", stage=stage, rows=count, estimate=estimate)

    def event(self, name: str, count: int = 1) -> None:
        log.info("progress_event", name=name, count=count)


class _Totals:
    """The runs total of the whole command: the sum of the children's, final once every child's is."""

    def __init__(self, shards: int) -> None:
        self._lock = threading.Lock()
        self.shards = shards
        self.by_shard: dict[int, tuple[int, bool]] = {}

    def set(self, shard: int, runs: int, final: bool, progress: Progress) -> None:
        with self._lock:
            self.by_shard[shard] = (runs, final)
            total = sum(n for n, _ in self.by_shard.values())
            done = len(self.by_shard) == self.shards and all(f for _, f in self.by_shard.values())
            progress.set_total(total, final=done)


def export_in_processes(child_args: list[str], processes: int, log_level: str, progress: Progress) -> dict[str, Any]:
    """Run `export` in `processes` children (shard i/N each) and return the merged JSON summary."""
    started = time.monotonic()
    env = {**os.environ, CHILD_ENV: "1"}
    children: list[subprocess.Popen[str]] = []
    progress.start("export", None)
    lock = threading.Lock()
    tails: list[list[str]] = [[] for _ in range(processes)]
    try:
        # children log at info at least: their run_* events drive the progress here, and our own logging
        # filters what they send by the level the user chose
        child_level = "debug" if log_level == "debug" else "info"
        for i in range(processes):
            argv = [sys.executable, "-m", "migrate_core", "--log-level", child_level, "--log-format", "json",
                    "export", *child_args, "--shard", f"{i}/{processes}", "--json"]
            children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=env, bufsize=1))
        totals = _Totals(processes)
        readers = [threading.Thread(target=_relay, args=(child.stderr, i, progress, tails[i], lock, totals),
                                    name=f"migrate-shard-{i}", daemon=True) for i, child in enumerate(children)]
        for reader in readers:
            reader.start()
        outputs = _collect(children)
        for reader in readers:
            reader.join()
    except BaseException:
        _interrupt(children)  # whatever stopped us, the children stop at their next batch
        raise
    finally:
        progress.stop()
    # the same error in every child (a bad token, an unknown project) is said once
    for message in dict.fromkeys(line for tail in tails for line in tail if line.startswith(ERROR_PREFIX)):
        sys.stderr.write(message + "\n")
    return merge(outputs, [c.returncode for c in children], tails, time.monotonic() - started)


def _collect(children: list[subprocess.Popen[str]]) -> list[str]:
    outputs = [""] * len(children)

    def read(i: int) -> None:
        assert children[i].stdout is not None
        outputs[i] = children[i].stdout.read()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(children))]
    for thread in threads:
        thread.start()
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        # a SIGINT sent to this process only (from a terminal every child got it too): pass it on, then let
        # the children finish their summaries
        _interrupt(children)
    for thread in threads:
        thread.join()
    return outputs


def _interrupt(children: list[subprocess.Popen[str]]) -> None:
    """SIGINT to every child still running (each stops at its next batch), then wait for all of them."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        child.wait()


def _relay(stream: IO[str] | None, shard: int, progress: Progress, tail: list[str], lock: threading.Lock,
           totals: _Totals | None = None) -> None:
    """Forward one child's log lines (through our own logging, tagged with its shard), count its runs and rows,
    and add its totals to the command's."""
    from .orchestrator import run_line_level

    totals = totals or _Totals(1)
    if stream is None:
        return
    for line in stream:
        text = line.rstrip("\n")
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "event" not in record:
            with lock:
                if not text.startswith(ERROR_PREFIX):  # a child's own error: said once, at the end
                    sys.stderr.write(line)
                tail.append(text)
                del tail[:-20]
            continue
        event = str(record.pop("event"))
        level = str(record.pop("level", "info"))
        record.pop("timestamp", None)
        if event in RUN_EVENTS:
            if record.get("stage") == "export":
                progress.run_done(RUN_EVENTS[event])
            rows, size = record.get("rows"), record.get("bytes")
            if event == "run_done" and isinstance(rows, int):
                progress.rows(rows, "export")
            if event == "run_done" and isinstance(size, int):
                progress.bytes(size, "export")
            if level == "info":
                level = run_line_level("ok" if event == "run_done" else "skipped" if event == "run_skipped"
                                       else "cancelled", progress)
        elif event == "progress_total":
            totals.set(shard, int(record.get("runs") or 0), bool(record.get("final")), progress)
            continue
        elif event == "progress_rows_total":
            rows = record.get("rows")
            progress.expect_rows(rows if isinstance(rows, int) else None, str(record.get("stage") or "export"),
                                 bool(record.get("estimate")))
            continue
        elif event == "progress_event":
            progress.event(str(record.get("name", "")), int(record.get("count") or 1))
            continue
        elif event == "progress":
            continue  # each child's periodic line: ours covers them all
        emit: Callable[..., Any] = getattr(log, level if level in ("debug", "info", "warning", "error") else "info")
        emit(event, shard=shard, **record)
        if level in ("warning", "error"):
            with lock:
                tail.append(f"{event}: {record}")
                del tail[:-20]


def merge(outputs: list[str], codes: list[int | None], tails: list[list[str]], seconds: float) -> dict[str, Any]:
    """One summary from the children's: runs listed together, counts and losses added up."""
    merged: dict[str, Any] = {"command": "export", "interrupted": False, "seconds": round(seconds, 3), "stages": {},
                              "losses": {}, "runs": [], "processes": []}
    for i, (out, code) in enumerate(zip(outputs, codes, strict=True)):
        try:
            data = json.loads(out) if out.strip() else None
        except ValueError:
            data = None
        entry: dict[str, Any] = {"shard": f"{i}/{len(outputs)}", "exit_code": code}
        if not isinstance(data, dict) or "stages" not in data:
            detail = " | ".join(line for line in tails[i][-3:] if line.strip()) or "no output"
            entry["error"] = f"process for shard {i}/{len(outputs)} ended with exit code {code} and no summary: " \
                             f"{detail}"[:2000]
            merged["processes"].append(entry)
            continue
        merged["processes"].append(entry)
        merged["interrupted"] = merged["interrupted"] or bool(data.get("interrupted"))
        for stage, counts in data["stages"].items():
            total = merged["stages"].setdefault(stage, {})
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        for what, n in data.get("losses", {}).items():
            merged["losses"][what] = merged["losses"].get(what, 0) + n
        merged["runs"] += data.get("runs", [])
    merged["losses"] = dict(sorted(merged["losses"].items()))
    return merged


def exit_code(merged: dict[str, Any], strict: bool) -> int:
    failed = [p for p in merged["processes"] if "error" in p]
    if failed and len(failed) == len(merged["processes"]) and all(p["exit_code"] == 2 for p in failed):
        return 2  # every process stopped on the same kind of error before moving anything: a usage error
    if failed:
        return 1
    if merged["interrupted"]:
        return 130
    if any(r.get("status") == "failed" for r in merged["runs"]):
        return 1
    if strict and merged["losses"]:
        return 1
    return 0
