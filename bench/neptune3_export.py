"""neptune3 export: one run of >= 10M float points and a project of 1000 small runs, from the fake Neptune 3.x.

Prints points/s, requests and peak RSS of our source (through the orchestrator into local_fs parquet), next to:
- floor: the same requests as ours (small runs in groups of 16, as ours reads them) through neptune-query's
  call chain, answers parsed by the protobuf runtime and dropped (HTTP + the fake + the parse every
  neptune-query user pays). ours/floor near 1 would mean the fake, not our code, limits throughput;
- public API: what today's exporter does, `neptune_query.runs.fetch_metrics(include_time="absolute")` per run
  (16 runs per call for the small runs), converted column-wise to the same rows. It builds the whole
  frame in memory, so its big run is capped at --baseline-points (default 2M) to keep the machine alive;
  per-point rates still compare.
Each phase runs in a fresh process, so its peak RSS is its own; the fake runs in this process and its request
log gives the requests (sign-in excluded). --profile prints where our big-run time goes (cProfile, tottime).

    uv run python bench/neptune3_export.py [--points 10000000] [--series 4] [--runs 1000] [--workers 4]
                                           [--latency 0.02] [--skip-baseline] [--profile]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake lives in tests/

T0 = 1_700_000_000_000
BIG, MANY = "bench/big", "bench/many"
STEP = 0.5
AUTH = ("oauth-token", "clients/config", "openid", "/auth/realms")


# ------------------------------------------------------------------------------------------- phases (children)


def _ours(project: str, out: Path, workers: int, profile: bool,
          shard: tuple[int, int] | None = None) -> tuple[int, int, int]:
    from migrate_core.api import Selection
    from migrate_core.orchestrator import Orchestrator
    from migrate_local_fs.storage import LocalFsStorage
    from migrate_neptune3 import Neptune3Config
    from migrate_neptune3.source import Neptune3Source

    if profile:  # no orchestrator, writes inline: cProfile sees all but the prefetch thread
        import cProfile
        import pstats
        import threading as _threading

        import migrate_neptune3.source as source_module
        from migrate_core.api import RunContext, RunReport, Selection

        # writes inline, so the profile sees them (the writer thread would hide them; fetch and decode still
        # run in the prefetch thread, where cProfile does not look: see the docs for per-thread times)
        source_module.INLINE_WRITE_ROWS = 1 << 62
        source = Neptune3Source(Neptune3Config(projects=[project], attribute_workers=1))
        storage = LocalFsStorage(out / "data", out / "files")
        prof = cProfile.Profile()
        rows = 0
        prof.enable()
        for run in source.list_runs(Selection()):
            report = RunReport()
            writer = storage.begin_run(run.project_id, run.run_id, {"plugin": "neptune3"})
            source.export_run(run, Selection(), writer, RunContext(report, _threading.Event()))
            writer.commit(report=report)
            rows += report.rows
        prof.disable()
        print("\n--- where our export's time goes (one thread, cProfile, by tottime)", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(16)
        return 1, rows, rows
    source = Neptune3Source(Neptune3Config(projects=[project], group_runs=int(os.environ.get("BENCH_GROUP_RUNS", 16))))
    # as the CLI: without --workers, the export runs with the source's preference
    orch = Orchestrator(LocalFsStorage(out / "data", out / "files"), source=source, workers=workers or 4,
                        export_workers=None if workers else source.workers_hint, selection=Selection(shard=shard))
    summary = orch.export()
    source.close()
    failed = [o.reason for o in summary.outcomes if o.status != "ok"]
    if failed:
        print(f"  failures: {failed[:3]}", file=sys.stderr)
    rows = sum(o.report.rows for o in summary.outcomes)
    return summary.count("export")["ok"], rows, rows


def _floor(project: str, page_points: int, group_runs: int = 16) -> tuple[int, int, int]:
    """Fetch what ours exports, with the requests ours makes, through neptune-query's call chain, and drop the
    answers (parsed by the protobuf runtime): runs in groups of `group_runs` in listing order; per group the
    union of their definitions, the values of those names for every run, the first float page of every
    (run, series) pair, the first string series page of every pair and every following page, and the
    existence check; a group of one asks as a run read alone does."""
    from migrate_neptune3.atoms import PARAMETER_TYPES
    from migrate_neptune3.client import Neptune3Client
    from migrate_neptune3.grouped import GROUP_FLOAT_POINTS, GROUP_SERIES
    from migrate_neptune3.series import float_request, series_answer, series_request
    from migrate_neptune3.source import LIST_ATTRIBUTES
    from neptune_query.internal.retrieval.metrics import ProtoFloatSeriesValuesResponseDTO

    client = Neptune3Client(os.environ["NEPTUNE_API_TOKEN"], "NEPTUNE_API_TOKEN")
    points = runs = 0
    ids = [next(a.string_properties.value for a in entry.attributes if a.name == "sys/id")
           for entry in client.search_runs(project, None, LIST_ATTRIBUTES, 1000)]
    for g in range(0, len(ids), group_runs):
        group = ids[g:g + group_runs]
        definitions = client.attribute_definitions_union(project, group)
        floats, strings = [], []
        if len(group) == 1:  # as ours: a group of one reads alone, asking values of its parameters only
            params = [n for n, t in definitions if t in PARAMETER_TYPES]
            list(client.attribute_values_by_run(project, group, params, 5000))
            floats = [(group[0], n) for n, t in definitions if t == "floatSeries"]
            strings = [(group[0], n) for n, t in definitions if t == "stringSeries"]
        else:
            names = list(dict.fromkeys(n for n, _ in definitions))
            for sys_id, attribute in client.attribute_values_by_run(project, group, names, 5000):
                if attribute.type == "floatSeries":
                    floats.append((sys_id, attribute.name))
                elif attribute.type == "stringSeries":
                    strings.append((sys_id, attribute.name))
        for c in range(0, len(floats), GROUP_SERIES):
            chunk = floats[c:c + GROUP_SERIES]
            pending = {str(i): float_request(str(i), project, sys_id, name, False)
                       for i, (sys_id, name) in enumerate(chunk)}
            first = page_points if len(group) == 1 else min(page_points, GROUP_FLOAT_POINTS * len(pending))
            limit = max(1, first // len(pending))
            while pending:  # the group's first page; ours asks for the following pages per run, alike in cost
                raw = client.float_series_raw({"requests": list(pending.values()), "order": "ascending",
                                               "stepRange": {"from": None, "to": None},
                                               "perSeriesPointsLimit": limit})
                following = {}
                for item in ProtoFloatSeriesValuesResponseDTO.FromString(raw).series:
                    values = item.series.values
                    points += len(values)
                    if len(values) >= limit and item.requestId in pending:
                        following[item.requestId] = {**pending[item.requestId], "afterStep": values[-1].step}
                pending = following
                limit = max(1, page_points // max(1, len(pending)))
        for c in range(0, len(strings), GROUP_SERIES):
            chunk = strings[c:c + GROUP_SERIES]
            pending = {str(i): series_request(str(i), project, sys_id, name, False)
                       for i, (sys_id, name) in enumerate(chunk)}
            while pending:
                _pages, pending = series_answer(client, pending)
        if len(group) > 1:
            list(client.attribute_values_by_run(project, group, ["sys/id"], len(group)))
        runs += len(group)
    return runs, points, points


def _public_api(project: str, out: Path, max_step: float | None) -> tuple[int, int, int]:
    """Today's exporter's way: neptune_query.runs.fetch_metrics for 16 runs at a time, frames -> rows."""
    import neptune_query.runs as nq_runs
    import pyarrow as pa
    from migrate_core.format import make_batch, steps_from_float, timestamps_ms
    from migrate_local_fs.storage import LocalFsStorage
    from neptune_query.filters import AttributeFilter

    storage = LocalFsStorage(out / "data", out / "files")
    ids = list(nq_runs.list_runs(project=project))
    rows = points = 0
    step_range = (None, max_step) if max_step is not None else (None, None)
    import warnings

    warnings.filterwarnings("ignore", message="no explicit representation of timezones")
    for i in range(0, len(ids), 16):
        batch_ids = ids[i:i + 16]
        frame = nq_runs.fetch_metrics(project=project, runs=batch_ids, attributes=AttributeFilter(type="float_series"),
                                      include_time="absolute", step_range=step_range)
        for run_id in batch_ids:
            writer = storage.begin_run(project, run_id, {"plugin": "public-api"})
            if run_id in frame.index.get_level_values(0):
                part = frame.xs(run_id, level=0)
                steps = part.index.to_numpy(dtype=np.float64)
                for attribute in part.columns.get_level_values(0).unique():
                    values = part[(attribute, "value")].to_numpy(dtype=np.float64)
                    keep = ~np.isnan(values)
                    stamps = part[(attribute, "absolute_time")].to_numpy()[keep]
                    n = int(keep.sum())
                    writer.write(make_batch(project, run_id, attribute, "float_series", n,
                                            step=steps_from_float(steps[keep]),
                                            timestamp=timestamps_ms(stamps.astype("datetime64[ms]").astype(np.int64)),
                                            float_value=pa.array(values[keep])))
                    rows += n
                    points += n
            writer.commit()
    return len(ids), rows, points


def _phase(name: str, project: str, env: dict[str, str], out: Path, workers: int, page_points: int,
           baseline_step: float | None, profile: bool, queue: Any, shard: tuple[int, int] | None = None) -> None:
    os.environ.update(env)
    import logging

    # imported before the clock starts, for every phase: the phases measure exporting, not interpreter start
    # (httpcore: the first request would import it, and its HTTP/2 modules are large)
    import httpcore  # noqa: F401
    import migrate_core.orchestrator  # noqa: F401
    import migrate_local_fs.storage  # noqa: F401
    import migrate_neptune3.source  # noqa: F401
    import neptune_query  # noqa: F401
    import neptune_query.runs  # noqa: F401
    from migrate_core.logsetup import configure_logging

    configure_logging("warning")
    logging.getLogger("neptune").setLevel(logging.ERROR)
    with PeakRss() as rss:
        started, cpu = time.perf_counter(), time.process_time()
        if name == "ours":
            runs, rows, points = _ours(project, out, workers, profile, shard)
        elif name == "floor":
            runs, rows, points = _floor(project, page_points)
        else:
            runs, rows, points = _public_api(project, out, baseline_step if project == BIG else None)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    queue.put((runs, rows, points, elapsed, rss.peak, cpu))


# ------------------------------------------------------------------------------------------- the driver


def populate(fake: Any, points: int, series: int, runs: int) -> None:
    rng = np.random.default_rng(7)
    big = fake.data.run("big-run", project=BIG, configs={"lr": 0.001, "opt": "adam"})
    per = points // series
    steps = np.arange(per, dtype=np.float64) * STEP  # decimal steps
    for s in range(series):
        big.metric(f"train/series_{s}", steps=steps, values=rng.standard_normal(per),
                   timestamps=T0 + np.arange(per, dtype=np.int64) * 10)
    for i in range(runs):
        run = fake.data.run(f"run-{i:05d}", project=MANY, tags=["bench"],
                            configs={"lr": 0.001 * (i + 1), "epochs": 10 + i, "opt": "adam", "amp": bool(i % 2)})
        run.metric("train/loss", steps=np.arange(200.0), values=rng.standard_normal(200))
        run.metric("val/acc", steps=np.arange(50.0) * 4, values=rng.random(50))
        run.string_series("logs/stdout", steps=np.arange(20.0), values=[f"line {k}" for k in range(20)])


def run_phase(ctx: Any, fake: Any, name: str, project: str, scratch: Path, args: argparse.Namespace,
              profile: bool = False, shards: int = 1, workers: int | None = None) -> dict[str, Any]:
    """One phase in fresh processes: one, or `shards` exporting shard i/N each into one storage at once."""
    fake.reset_log()
    env = fake.client_env(retry_soft_timeout=60)
    env["BENCH_GROUP_RUNS"] = str(args.group_runs)
    env["NEPTUNE_PROJECT"] = project
    out = scratch / f"{name}-{project.replace('/', '_')}"
    # the big run's steps are k * 0.5: cap the baseline at --baseline-points points over all its series
    step = (args.baseline_points // args.series - 1) * STEP if args.baseline_points else None
    children = []
    for i in range(shards):
        queue = ctx.Queue()
        proc = ctx.Process(target=_phase, args=(name, project, env, out, workers or args.workers, args.page_points,
                                                step, profile, queue, (i, shards) if shards > 1 else None))
        children.append((proc, queue))
    fake_cpu = time.process_time()  # the fake serves from this process's threads
    for proc, _ in children:
        proc.start()
    parts = [result_of(proc, queue) for proc, queue in children]
    fake_cpu = time.process_time() - fake_cpu
    requests = sum(1 for r in fake.requests if not any(a in r.path for a in AUTH))
    shutil.rmtree(out, ignore_errors=True)
    # shards run at once: the slowest one's time is the phase's; runs, memory and CPU add up
    return {"runs": sum(p[0] for p in parts), "rows": sum(p[1] for p in parts), "points": sum(p[2] for p in parts),
            "seconds": max(p[3] for p in parts), "peak_mb": sum(p[4] for p in parts) / (1 << 20),
            "requests": requests, "cpu": sum(p[5] for p in parts), "fake_cpu": fake_cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="run workers (default: what the CLI uses, the source's preference: 2)")
    parser.add_argument("--page-points", type=int, default=100_000, help="floor phase page size (ours' default)")
    parser.add_argument("--baseline-points", type=int, default=2_000_000,
                        help="cap on the public-API baseline's big run (steps below it); 0 = no cap")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile our big-run export (extra phase)")
    parser.add_argument("--fake-nagle", action="store_true", help="leave the fake's 40 ms small-answer stall on")
    parser.add_argument("--shards", type=int, default=2,
                        help="also export the small runs as N processes at once, `--shard i/N` each with "
                             "--shard-workers workers (0 or 1: skip)")
    parser.add_argument("--shard-workers", type=int, default=2)
    parser.add_argument("--group-runs", type=int, default=16,
                        help="our source's group_runs (1: every run read alone, as before groups existed)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the fake waits before each API answer, like a server across a network "
                             "(the floor is one sequential stream, so with latency it measures latency, not CPU)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    args.baseline_points = args.baseline_points or None
    from tests.fakes.neptune3 import server as fake_server
    from tests.fakes.neptune3.fixtures import running_fake_neptune3

    if not args.fake_nagle:
        # The fake answers in two writes (headers, then body) without TCP_NODELAY, so every small answer waits
        # ~40 ms for the client's delayed ACK; a real server does not. Reported as a fake bug; --fake-nagle
        # keeps the fake as it is.
        fake_server._RequestHandler.disable_nagle_algorithm = True

    scratch = Path(tempfile.mkdtemp(prefix="migrate-n3-bench-", dir=args.dir))
    ctx = multiprocessing.get_context("spawn")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        with running_fake_neptune3(project=BIG) as fake:
            populate(fake, args.points, args.series, args.runs)
            if args.latency > 0:
                fake.faults.add(r"^/api/", "slow", delay=args.latency, times=None)
            print(f"(populated the fake in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
            phases = [("ours", BIG), ("floor", BIG), ("ours", MANY), ("floor", MANY)]
            if not args.skip_baseline:
                phases += [("public API", BIG), ("public API", MANY)]
            for name, project in phases:
                results[(name, project)] = run_phase(ctx, fake, name, project, scratch, args)
                r = results[(name, project)]
                print(f"  {name:>10} {project}: {r['points']:,} points in {r['seconds']:.1f} s", file=sys.stderr)
            if args.shards > 1:
                results[("shards", MANY)] = run_phase(ctx, fake, "ours", MANY, scratch, args, shards=args.shards,
                                                      workers=args.shard_workers)
            if args.profile:
                run_phase(ctx, fake, "ours", BIG, scratch, args, profile=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"neptune3 export benchmark: one run with {args.series} float series x {args.points // args.series:,} "
          f"points (decimal steps), and {args.runs} runs (4 params, 250 float points, 20 log lines each); "
          f"{args.workers or 'default (2)'} workers, fake in-process (+{args.latency * 1000:.0f} ms per request), python {sys.version.split()[0]}, {os.cpu_count()} cores")
    cols = [("ours", "ours"), ("floor", "floor"), ("public API", "public API")]
    cols = [c for c in cols if (c[0], BIG) in results]
    print(f"{'':30}" + "".join(f"{label:>14}" for _, label in cols) + f"{'ours/floor':>12}")
    table = [
        ("points/s (big run)", BIG, lambda r: r["points"] / r["seconds"], "{:>14,.0f}"),
        ("points (big run)", BIG, lambda r: r["points"], "{:>14,.0f}"),
        ("requests (big run)", BIG, lambda r: r["requests"], "{:>14,.0f}"),
        ("peak RSS MB (big run)", BIG, lambda r: r["peak_mb"], "{:>14,.0f}"),
        ("client CPU s (big run)", BIG, lambda r: r["cpu"], "{:>14,.2f}"),
        ("fake's CPU s (big run)", BIG, lambda r: r["fake_cpu"], "{:>14,.2f}"),
        ("runs/s (small runs)", MANY, lambda r: r["runs"] / r["seconds"], "{:>14,.1f}"),
        ("float points/s (small runs)", MANY, lambda r: r["points"] / r["seconds"], "{:>14,.0f}"),
        ("requests per run (small)", MANY, lambda r: r["requests"] / max(1, r["runs"]), "{:>14,.2f}"),
        ("peak RSS MB (small runs)", MANY, lambda r: r["peak_mb"], "{:>14,.0f}"),
        ("client CPU s (small runs)", MANY, lambda r: r["cpu"], "{:>14,.2f}"),
        ("fake's CPU s (small runs)", MANY, lambda r: r["fake_cpu"], "{:>14,.2f}"),
    ]
    for label, project, fn, fmt in table:
        values = [fn(results[(key, project)]) for key, _ in cols]
        ratio = values[0] / values[1] if values[1] else 0.0
        print(f"{label:30}" + "".join(fmt.format(v) for v in values) + f"{ratio:>12.2f}")
    print("notes: 'floor' fetches what ours exports (definitions, parameters, float and string series) with the "
          "same requests and writes nothing; ours also re-checks that a run still exists when it read pages after "
          "its definitions (one request: the big run) and writes local_fs parquet. 'public API' reads only float series, its big run capped at "
          f"{args.baseline_points or args.points:,} points.")
    if ("shards", MANY) in results:
        r, floor = results[("shards", MANY)], results[("floor", MANY)]
        print(f"small runs as {args.shards} processes (--shard i/{args.shards}, {args.shard_workers} workers each): "
              f"{r['runs'] / r['seconds']:,.1f} runs/s, {r['peak_mb']:,.0f} MB peak RSS summed, client CPU "
              f"{r['cpu']:.2f} s; ours/floor {r['runs'] / r['seconds'] / (floor['runs'] / floor['seconds']):.2f}")
    peak = max(results[("ours", BIG)]["peak_mb"], results[("ours", MANY)]["peak_mb"])
    big_ok = results[("ours", BIG)]["points"] >= args.points
    print(f"targets: peak RSS < 500 MB {'PASS' if peak < 500 else 'MISS'} ({peak:.0f} MB); "
          f"every big-run point exported {'PASS' if big_ok else 'MISS'}; ours/floor points/s (big) "
          f"{results[('ours', BIG)]['points'] / results[('ours', BIG)]['seconds'] / (results[('floor', BIG)]['points'] / results[('floor', BIG)]['seconds']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
