"""Re-sync cost: after a full load, one of N runs changes at the source; how much does the next load cost?

Everything runs as a user runs it: `migrate export` and `migrate load` are separate processes, timed from
start to exit, against the fake Pluto server (in this process). Steps:

1. export N demo runs (local_fs), then a full `migrate load --sink pluto` into a fresh project: the baseline;
2. `migrate load` again with nothing changed (the ledger skips every run);
3. the source run DEMO-7 grows (more points in every series, more lines, more histogram steps), is exported
   again (`export --force -r ^DEMO-7$`), and `migrate load` re-syncs: timed, and what it sent is counted
   in the fake (requests, metric points written);
4. the re-synced project is compared with a fresh load of the same storage into another project.

Target (issue 11): the re-sync sends only DEMO-7's new points and takes < 5% of the full load.

    uv run python bench/pluto_resync.py [--runs 100 --points 50000] [--dev-venv]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


PYTHON = [sys.executable]  # replaced by the lean venv's interpreter when it can be built


def _migrate(cwd: Path, env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([*PYTHON, "-m", "migrate_core.cli", "--log-level", "warning", *args], cwd=cwd,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"`migrate {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def _points(srv, project: str, external_id: str | None = None) -> int:
    with srv.state.lock:
        runs = srv.state.projects[project].runs if project in srv.state.projects else []
        return sum(len(series.raw()[0]) for run in runs if external_id in (None, run.external_id)
                   for series in run.metrics.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--points", type=int, default=50_000, help="points per float series (4 series per run)")
    parser.add_argument("--grow", type=int, default=1_000, help="points the changed run gains per series")
    parser.add_argument("--dev-venv", action="store_true",
                        help="run migrate from this (dev) venv, where pluto-ml's .pth hook slows every start")
    args = parser.parse_args()

    from tests.fakes.pluto import FakePluto
    from tests.plugins.pluto.helpers import snapshot

    demo = ["--set", f"source.demo.runs={args.runs}", "--set", f"source.demo.points_per_series={args.points}",
            "--set", "source.demo.string_series_lines=200", "--set", "source.demo.histogram_steps=50"]
    grown = ["--set", f"source.demo.runs={args.runs}",
             "--set", f"source.demo.points_per_series={args.points + args.grow}",
             "--set", "source.demo.string_series_lines=220", "--set", "source.demo.histogram_steps=55"]
    with tempfile.TemporaryDirectory() as tmp, FakePluto() as srv:
        cwd = Path(tmp)
        venv = "dev venv (pluto-ml's .pth hook at every start)"
        if not args.dev_venv:
            # a venv of migrate-ml, migrate-ml-local-fs and migrate-ml-pluto with their own dependencies
            from pluto_process import lean_venv

            lean = lean_venv(cwd / "lean-venv")
            if lean is not None:
                PYTHON[:] = [str(lean / "python")]
                venv = "venv without pluto-ml (what migrate-ml-pluto installs)"
        env = {**os.environ, **srv.client_env(home=cwd, pluto_dir=cwd / "pluto")}
        into = ["--set", "sink.pluto.project=p"]
        export_s = _migrate(cwd, env, "export", "--source", "demo", *demo)
        full_s = _migrate(cwd, env, "load", "--sink", "pluto", *into)
        full_points = _points(srv, "p")
        idle_s = _migrate(cwd, env, "load", "--sink", "pluto", *into)
        _migrate(cwd, env, "export", "--source", "demo", *grown, "--force", "-r", "^DEMO-7$")
        changed = "demo:demo/project:DEMO-7"
        before = _points(srv, "p", changed)
        srv.reset_counters()
        resync_s = _migrate(cwd, env, "load", "--sink", "pluto", *into)
        requests = sum(srv.counts.values())
        sent_points = _points(srv, "p", changed) - before
        other_points = _points(srv, "p") - full_points - sent_points
        _migrate(cwd, env, "load", "--sink", "pluto", "--set", "sink.pluto.project=ref")
        same = all(
            _plain(snapshot(srv, "p", f"demo:demo/project:DEMO-{i}")) == _plain(snapshot(srv, "ref",
                                                                                          f"demo:demo/project:DEMO-{i}"))
            for i in range(1, args.runs + 1))

    print(f"{args.runs} runs x 4 series x {args.points:,} points ({full_points:,} points), "
          f"DEMO-7 grown by {args.grow:,} points per series; every figure is a whole `migrate` process, "
          f"from the {venv}")
    print(f"{'':34}{'seconds':>10}{'of full':>10}")
    print(f"{'export (demo source)':34}{export_s:>10.2f}")
    print(f"{'full load':34}{full_s:>10.2f}{1.0:>10.1%}")
    print(f"{'load again, nothing changed':34}{idle_s:>10.2f}{idle_s / full_s:>10.1%}")
    print(f"{'re-sync, 1 run changed':34}{resync_s:>10.2f}{resync_s / full_s:>10.1%}   target < 5%")
    print(f"re-sync sent {sent_points:,} metric points into DEMO-7 (its growth: {4 * args.grow:,}), "
          f"{other_points:,} into other runs, in {requests} requests")
    print(f"re-synced project equals a fresh load of the same storage: {same}")


def _plain(snap: dict | None) -> dict | None:
    if snap is not None:
        snap["config"]["_migrate"].pop("external_id", None)
    return snap


if __name__ == "__main__":
    main()
