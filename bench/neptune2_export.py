"""neptune2 export: 1000 runs, and one run with a 1M-point series, from the fake Neptune 2.x server.

Prints runs/s, requests per run, points/s and peak RSS for our source, next to a baseline measured the same
way on the same data: a source that does what today's exporter does with the plain neptune 1.x client —
list with `fetch_runs_table`, then open a read-only run (`init_run`, 3 requests) per attribute class
(parameters, metrics, series, files), fetch string sets one by one, series through `fetch_values` and files
through `download`. Both go through the same orchestrator (same workers) into local_fs parquet.
Each phase runs in a fresh process, so its peak RSS is its own; the fake server runs in this process and
its request counters give requests per run (bootstrap requests excluded, listing included).
Targets (issue 5): >= 3x fewer requests per run than the baseline, peak RSS < 500 MB.

    uv run python bench/neptune2_export.py [--runs 1000] [--points 1000000] [--workers 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import PeakRss, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/

BOOTSTRAP = {"getClientConfig", "exchangeApiToken", "oauthRefresh"}
T0 = 1_700_000_000_000


# ------------------------------------------------------------------------------------------- the baseline


def baseline_source(project: str):
    """Today's exporter, reduced to its request pattern: a read-only run per attribute class."""
    import logging

    import neptune
    import pyarrow as pa
    from migrate_core.api import Source, SourceRun
    from migrate_core.format import make_batch, steps_from_float, timestamps_ms
    from neptune.exceptions import FetchAttributeNotFoundException

    atoms = {"Float": ("float", "float_value"), "Integer": ("int", "int_value"), "String": ("string", "string_value"),
             "Boolean": ("bool", "bool_value"), "Datetime": ("datetime", "datetime_value"),
             "StringSet": ("string_set", "string_set_value")}
    classes = {"parameters": set(atoms), "metrics": {"FloatSeries"}, "series": {"StringSeries"},
               "files": {"File"}}

    def flatten(structure: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for key, value in structure.items():
            if isinstance(value, dict):
                out.update(flatten(value, f"{prefix}{key}/"))
            else:
                out[f"{prefix}{key}"] = value
        return out

    class Baseline(Source):
        name = "baseline"

        def list_runs(self, selection):
            proj = neptune.init_project(project=project, mode="read-only")
            table = proj.fetch_runs_table(columns=["sys/id"], ascending=True, progress_bar=False).to_pandas()
            proj.stop()
            for sys_id in table["sys/id"]:
                yield SourceRun(project, sys_id)

        def export_run(self, run, selection, writer, ctx):
            for wanted in classes.values():
                nrun = neptune.init_run(with_id=run.run_id, project=project, mode="read-only")
                try:
                    # parameters: one run.fetch() for every atom, then one request per string set (as the exporter)
                    fetched = flatten(nrun.fetch()) if "Float" in wanted else {}
                    for path, attr in flatten(nrun.get_structure()).items():
                        kind = type(attr).__name__
                        if kind not in wanted:
                            continue
                        try:
                            batch = self._batch(run, fetched, path, attr, kind, writer)
                        except FetchAttributeNotFoundException:  # sys/group_tags: ignored, as the exporter does
                            continue
                        if batch is not None:
                            writer.write(batch)
                            ctx.report.add(rows=batch.num_rows)
                finally:
                    nrun.stop()

        def _batch(self, run, fetched, path, attr, kind, writer):
            if kind in atoms:
                value = attr.fetch() if kind == "StringSet" else fetched.get(path)
                canonical, column = atoms[kind]
                value = sorted(value) if kind == "StringSet" else value
                return make_batch(run.project_id, run.run_id, path, canonical, 1, **{column: [value]})
            if kind in ("FloatSeries", "StringSeries"):
                df = attr.fetch_values(include_timestamp=True, progress_bar=False)
                stamps = df["timestamp"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
                column = "float_value" if kind == "FloatSeries" else "string_value"
                values = pa.array(df["value"].to_numpy(), pa.float64() if kind == "FloatSeries" else pa.string())
                return make_batch(run.project_id, run.run_id, path, "float_series" if kind == "FloatSeries"
                                  else "string_series", len(df), step=steps_from_float(df["step"].to_numpy()),
                                  timestamp=timestamps_ms(stamps), **{column: values})
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "f"
                attr.download(destination=str(target), progress_bar=False)
                stored = writer.write_file(path, "f", target)
            return make_batch(run.project_id, run.run_id, path, "file", 1, file_value=[{"path": stored}])

    logging.getLogger("neptune").setLevel(logging.ERROR)
    return Baseline()


# ------------------------------------------------------------------------------------------- phases


def _phase(name: str, project: str, env: dict[str, str], out: Path, workers: int, queue) -> None:
    os.environ.update(env)
    time.tzset()
    import logging

    import neptune  # noqa: F401 - imported before the clock starts, for both sides
    from migrate_core.logsetup import configure_logging
    from migrate_core.orchestrator import Orchestrator
    from migrate_local_fs.storage import LocalFsStorage

    configure_logging("warning")
    logging.getLogger("neptune").setLevel(logging.ERROR)
    if name == "ours":
        from migrate_neptune2 import Neptune2Config
        from migrate_neptune2.source import Neptune2Source

        source = Neptune2Source(Neptune2Config(projects=[project], requests_per_minute=0, runs_page_size=1000))
    else:
        source = baseline_source(project)
    with PeakRss() as rss:
        started = time.perf_counter()
        summary = Orchestrator(LocalFsStorage(out / "data", out / "files"), source=source, workers=workers).export()
        elapsed = time.perf_counter() - started
    source.close()
    counts = summary.count("export")
    rows = sum(o.report.rows for o in summary.outcomes)
    failed = [o.reason for o in summary.outcomes if o.status != "ok"][:3]
    queue.put((counts["ok"], rows, elapsed, rss.peak, failed))


def populate(srv, runs: int, points: int) -> tuple[int, int]:
    rng = np.random.default_rng(5)
    per_run_points = 0
    for i in range(runs):
        srv.add_run("ws/runs", attrs={"params/lr": 0.001 * (i + 1), "params/epochs": 10 + i, "params/opt": "adam",
                                      "params/amp": bool(i % 2), "params/layers": {"conv", "relu"}},
                    tags=["bench"],
                    float_series={"train/loss": rng.standard_normal(200), "val/acc": rng.random(50)},
                    string_series={"logs/stdout": [f"line {k}" for k in range(20)]},
                    files={"model/config": b"lr: 0.001\n" * 10})
    per_run_points = 270
    steps = np.arange(points, dtype=np.float64)
    srv.add_run("ws/big", float_series={"train/loss": (steps, rng.standard_normal(points),
                                                         T0 + np.arange(points, dtype=np.int64))})
    return per_run_points, points


def run_phase(ctx, srv, name: str, project: str, scratch: Path, workers: int) -> dict[str, Any]:
    srv.reset_counters()
    queue = ctx.Queue()
    env = srv.client_env(retries_timeout=30)
    proc = ctx.Process(target=_phase, args=(name, project, env, scratch / f"{name}-{project.replace('/', '_')}",
                                            workers, queue))
    proc.start()
    ok, rows, seconds, peak, failed = result_of(proc, queue)
    requests = sum(n for op, n in srv.counts.items() if op not in BOOTSTRAP and not op.startswith("swagger"))
    if failed:
        print(f"  {name} {project}: failures: {failed}", file=sys.stderr)
    return {"runs": ok, "rows": rows, "seconds": seconds, "peak_mb": peak / (1 << 20), "requests": requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fake adds to every request")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    from tests.fakes.neptune2 import FakeNeptune2Server

    scratch = Path(tempfile.mkdtemp(prefix="migrate-n2-bench-", dir=args.dir))
    ctx = multiprocessing.get_context("spawn")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with FakeNeptune2Server() as srv:
        srv.record_requests = False
        populate(srv, args.runs, args.points)
        srv.latency = args.latency
        try:
            for project in ("ws/runs", "ws/big"):
                for name in ("ours", "baseline"):
                    results[(name, project)] = run_phase(ctx, srv, name, project, scratch, args.workers)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"neptune2 export benchmark: {args.runs} runs (5 params, 2 float + 1 string series, 1 file each) and "
          f"one run with a {args.points:,}-point series; {args.workers} workers, fake server in-process "
          f"(+{args.latency * 1000:g} ms per request), "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores; client rate limit off")
    head = f"{'':26}{'ours':>14}{'baseline':>14}{'ratio':>9}"
    many, big = ("ws/runs", "ws/big")
    big_label = f"{args.points / 1e6:g}M" if args.points >= 1_000_000 else f"{args.points // 1000}k"
    rows = [
        ("runs/s", lambda r: r["runs"] / r["seconds"], many, "{:>14,.1f}"),
        ("requests per run", lambda r: r["requests"] / max(1, r["runs"]), many, "{:>14,.2f}"),
        (f"rows/s ({args.runs} runs)", lambda r: r["rows"] / r["seconds"], many, "{:>14,.0f}"),
        (f"peak RSS MB ({args.runs} runs)", lambda r: r["peak_mb"], many, "{:>14,.0f}"),
        (f"points/s ({big_label} series)", lambda r: r["rows"] / r["seconds"], big, "{:>14,.0f}"),
        (f"requests ({big_label} run)", lambda r: r["requests"], big, "{:>14,.0f}"),
        (f"peak RSS MB ({big_label} series)", lambda r: r["peak_mb"], big, "{:>14,.0f}"),
    ]
    print(head)
    for label, fn, project, fmt in rows:
        ours, base = fn(results[("ours", project)]), fn(results[("baseline", project)])
        print(f"{label:26}" + fmt.format(ours) + fmt.format(base) + f"{(ours / base if base else 0):>9.2f}")
    for key, r in results.items():
        if key[0] == "ours" and r["runs"] != (args.runs if key[1] == many else 1):
            print(f"WARNING: ours exported {r['runs']} runs of {key[1]}")
    ours_rpr = results[("ours", many)]["requests"] / max(1, results[("ours", many)]["runs"])
    base_rpr = results[("baseline", many)]["requests"] / max(1, results[("baseline", many)]["runs"])
    peak = max(results[("ours", many)]["peak_mb"], results[("ours", big)]["peak_mb"])
    print(f"targets: >= 3x fewer requests per run {'PASS' if base_rpr >= 3 * ours_rpr else 'MISS'} "
          f"({base_rpr / ours_rpr:.1f}x), peak RSS < 500 MB {'PASS' if peak < 500 else 'MISS'} ({peak:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
