"""Pluto load throughput: our sink against two pluto-ml baselines, on the same dump, against the fake.

A demo dump of >= 20M metric points over many runs is exported once (local_fs). Each method then runs in
its own process (so CPU and peak RSS are the client's alone; the fake server runs in this process):

- ours       `migrate load --sink pluto` (Orchestrator + PlutoSink), `--workers` runs at a time, every point;
- (a) default one `op.log({...}, step=...)` per step with default settings (today's loader's method),
               on a sample of the same data (its rate is steady: ~100 steps/s);
- (b) tuned   pluto-ml with batch 5000, flush 0.05 s, `op._log_metrics_batch` of 2000 steps, on a sample.

Every method's points are counted back in the fake (lossless check). Then one 10M-point run is loaded
alone for the peak-RSS target. Printed per method: points, seconds, points/s, client CPU seconds per
million points (process + children, i.e. pluto-ml's sync process too) and peak RSS.
Targets (issue 3): >= 10x baseline (b) points/s, <= 1.5 CPU s per M points, < 500 MB for a 10M-point run.

    uv run python bench/pluto_load.py [--runs 40 --series 10 --points 50000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import PeakRss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------- workers


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _storage(data: Path):
    from migrate_local_fs.storage import LocalFsStorage

    return LocalFsStorage(data / "data", data / "files")


def worker_ours(args: argparse.Namespace) -> dict:
    from migrate_core.logsetup import configure_logging
    from migrate_core.orchestrator import Orchestrator
    from migrate_pluto.settings import PlutoConfig
    from migrate_pluto.sink import PlutoSink

    configure_logging("warning", "json")
    storage = _storage(Path(args.data))
    sink = PlutoSink(PlutoConfig(project=args.project, url_api=args.url, url_ingest=args.url, url_py=args.url))
    cpu0 = _cpu()
    with PeakRss() as rss:  # our sink starts no processes
        t0 = time.perf_counter()
        summary = Orchestrator(storage, sink=sink, workers=args.workers).load()
        seconds = time.perf_counter() - t0
    failed = [o.reason for o in summary.outcomes if o.status != "ok"]
    if failed:
        raise SystemExit(f"load failed: {failed[:3]}")
    points = sum(r.manifest["rows_by_type"].get("float_series", 0) for r in storage.list_runs())
    return {"points": points, "seconds": seconds, "cpu": _cpu() - cpu0, "rss": rss.peak}


def _sample_steps(args: argparse.Namespace) -> list[tuple[str, list[tuple[dict, int, float]]]]:
    """(run id, [(metrics of one step, integer step, epoch seconds)]) for the first `--sample` points,
    grouped per step as today's loader does. Decimal steps use the same x100 scale as our sink."""
    import pyarrow.compute as pc
    from migrate_core.format import plain, step_units

    storage = _storage(Path(args.data))
    out, left = [], args.sample
    for run in storage.list_runs():
        if left <= 0:
            break
        rows: dict[int, tuple[dict, float]] = {}
        for batch in storage.read(run, columns=["attribute_path", "attribute_type", "step", "timestamp",
                                                "float_value"]):
            table = plain(batch)
            table = table.filter(pc.equal(table["attribute_type"], "float_series"))
            steps = step_units(table["step"]) // 10_000
            times = table["timestamp"].cast("int64").to_pylist()
            for name, step, t, v in zip(table["attribute_path"].to_pylist(), steps.tolist(), times,
                                        table["float_value"].to_pylist(), strict=True):
                if left <= 0:
                    break
                rows.setdefault(step, ({}, t / 1000))[0][name] = v
                left -= 1
        out.append((run.run_id, [(d, s, t) for s, (d, t) in sorted(rows.items())]))
    return out


def worker_pluto(args: argparse.Namespace) -> dict:
    import pluto

    data = _sample_steps(args)
    points = sum(len(d) for _run, steps in data for d, _s, _t in steps)
    settings = {"url_app": args.url, "url_api": args.url, "url_ingest": args.url, "url_py": args.url,
                "disable_console": True, "disable_system_metrics": True}
    if args.method == "b":
        settings.update(sync_process_batch_size=5000, sync_process_flush_interval=0.05,
                        sync_process_shutdown_timeout=600)
    cpu0 = _cpu()
    with PeakRss(children=True) as rss:
        t0 = time.perf_counter()
        for run_id, steps in data:
            op = pluto.init(project=args.project, name=run_id, run_id=f"bench-{args.method}:{run_id}",
                            settings=dict(settings))
            if args.method == "a":
                for metrics, step, _t in steps:
                    op.log(metrics, step=step)  # today's loader: no timestamp, one call per step
            else:
                for i in range(0, len(steps), 2000):
                    op._log_metrics_batch(steps[i : i + 2000])
                    while op._sync_manager.get_pending_count() > 20_000:
                        time.sleep(0.01)
            op.finish()
        seconds = time.perf_counter() - t0
    return {"points": points, "seconds": seconds, "cpu": _cpu() - cpu0, "rss": rss.peak}


# ------------------------------------------------------------------------------------------- driver


def export(target: Path, runs: int, series: int, points: int) -> int:
    from migrate_core.demo import DemoConfig
    from migrate_core.demo_source import DemoSource
    from migrate_core.logsetup import configure_logging
    from migrate_core.orchestrator import Orchestrator

    configure_logging("warning", "json")
    config = DemoConfig(project="bench/pluto", runs=runs, series_per_run=series, points_per_series=points,
                        string_series_lines=0, histogram_steps=0, files=False, fork=False)
    summary = Orchestrator(_storage(target), source=DemoSource(config), workers=2).export()
    if any(o.status != "ok" for o in summary.outcomes):
        raise SystemExit("export failed")
    return runs * series * points


def run_worker(method: str, data: Path, srv, project: str, home: Path, **extra: object) -> dict:
    env = {**os.environ, **srv.client_env(home=home, pluto_dir=home / "pluto")}
    cmd = [sys.executable, __file__, "--worker", method, "--data", str(data), "--url", srv.url, "--project", project]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=home)
    if done.returncode != 0:
        raise SystemExit(f"{method} worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with srv.state.lock:
        p = srv.state.projects.get(project)
        stored = sum(len(s) for r in (p.runs if p else []) for s in r.metrics.values())
    result["stored"] = stored
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--points", type=int, default=50_000, help="points per series")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sample-a", type=int, default=20_000, help="points for baseline (a) (~1000 points/s)")
    ap.add_argument("--sample-b", type=int, default=1_000_000, help="points for baseline (b)")
    ap.add_argument("--big", type=int, default=10_000_000, help="points of the single-run RSS check (0: skip)")
    ap.add_argument("--skip-baselines", action="store_true")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["ours", "a", "b"])
    ap.add_argument("--data")
    ap.add_argument("--url")
    ap.add_argument("--project")
    ap.add_argument("--sample", type=int, default=0)
    args = ap.parse_args()

    if args.worker:
        args.method = args.worker
        result = worker_ours(args) if args.worker == "ours" else worker_pluto(args)
        print(json.dumps(result))
        return

    from tests.fakes.pluto import FakePluto

    with tempfile.TemporaryDirectory(prefix="pluto-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        total = export(root / "dump", args.runs, args.series, args.points)
        print(f"dump: {total:,} metric points in {args.runs} runs ({time.perf_counter() - t0:.1f} s to export)",
              flush=True)
        results: dict[str, dict] = {}
        with FakePluto(keep_request_log=False) as srv:
            home = root / "home"
            home.mkdir()
            results["ours"] = run_worker("ours", root / "dump", srv, "ours", home, workers=args.workers)
            print("ours done", flush=True)
            if not args.skip_baselines:
                results["(b) pluto-ml tuned"] = run_worker("b", root / "dump", srv, "b", home, sample=args.sample_b)
                print("(b) done", flush=True)
                results["(a) pluto-ml default"] = run_worker("a", root / "dump", srv, "a", home,
                                                            sample=args.sample_a)
                print("(a) done", flush=True)
        if args.big:
            series = 20
            export(root / "big", 1, series, args.big // series)
            with FakePluto(keep_request_log=False) as srv:
                results["ours, one 10M-point run"] = run_worker("ours", root / "big", srv, "big", home, workers=1)
    print()
    print(f"{'method':<26} {'points':>12} {'stored':>12} {'seconds':>9} {'points/s':>11} {'CPU s/M pts':>12} "
          f"{'peak RSS MB':>12}")
    for name, r in results.items():
        rate = r["points"] / r["seconds"]
        print(f"{name:<26} {r['points']:>12,} {r['stored']:>12,} {r['seconds']:>9.1f} {rate:>11,.0f} "
              f"{r['cpu'] / r['points'] * 1e6:>12.2f} {r['rss'] / 2**20:>12.0f}")
    ours = results["ours"]["points"] / results["ours"]["seconds"]
    for name in ("(b) pluto-ml tuned", "(a) pluto-ml default"):
        if name in results:
            print(f"ours / {name}: {ours / (results[name]['points'] / results[name]['seconds']):.1f}x points/s")
    lossless = all(r["stored"] == r["points"] for r in results.values())
    print("lossless (every point counted back in the fake):", "yes" if lossless else "NO")


if __name__ == "__main__":
    main()
