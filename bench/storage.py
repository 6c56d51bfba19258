"""Storage throughput: a demo export of >= 20M rows through local_fs, then a full read back.

Prints rows/s written and read, and peak RSS, next to a baseline measured in the same process on the
same data: a plain `pyarrow.parquet.ParquetWriter` with pyarrow's defaults writing the generated rows as
plain-string batches, as the exporter does (no manifest, no rotation, no stats), and a plain pyarrow scan. The ratios say what our bookkeeping costs.
Targets (issue 2): >= 2M rows/s write, >= 10M rows/s read, peak RSS < 500 MB whatever the run size.

    uv run python bench/storage.py [--rows 20000000] [--runs 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
from benchkit import PeakRss, result_of
from migrate_core.api import RunContext, RunReport, Selection
from migrate_core.demo import DemoConfig
from migrate_core.demo_source import DemoSource
from migrate_core.format import SCHEMA
from migrate_core.format import plain as plain_strings
from migrate_core.logsetup import configure_logging
from migrate_core.orchestrator import Orchestrator
from migrate_local_fs.storage import LocalFsStorage


def demo_config(rows: int, runs: int) -> DemoConfig:
    per_run = rows // runs
    series = 10
    return DemoConfig(runs=runs, series_per_run=series, points_per_series=per_run // series, fork=False,
                      files=False, histogram_steps=10, string_series_lines=100, batch_rows=250_000)


def bench_baseline_write(config: DemoConfig, out: Path) -> tuple[int, float]:
    source = DemoSource(config)
    rows = 0
    started = time.perf_counter()

    class Plain:
        def __init__(self, path: Path) -> None:
            self.writer = pq.ParquetWriter(path, SCHEMA, compression="snappy")

        def write(self, batch) -> None:
            nonlocal rows
            self.writer.write_table(plain_strings(batch))  # the exporter's batches carry plain strings
            rows += batch.num_rows

    out.mkdir(parents=True)
    for i, run in enumerate(source.list_runs(Selection())):
        plain = Plain(out / f"{i}.parquet")
        source.export_run(run, Selection(), plain, RunContext(RunReport(), threading.Event()))
        plain.writer.close()
    return rows, time.perf_counter() - started


def bench_ours_write(config: DemoConfig, root: Path, workers: int) -> tuple[int, float, Orchestrator]:
    storage = LocalFsStorage(root / "data", root / "files")
    orch = Orchestrator(storage, source=DemoSource(config), workers=workers)
    started = time.perf_counter()
    summary = orch.export()
    elapsed = time.perf_counter() - started
    assert summary.exit_code(False) == 0, summary.as_json()
    return sum(o.report.rows for o in summary.outcomes), elapsed, orch


def bench_ours_read(root: Path, workers: int) -> tuple[int, float]:
    """Reads every run back as `load` does: all columns, bounded batches, `workers` runs at a time."""
    storage = LocalFsStorage(root / "data", root / "files")
    started = time.perf_counter()

    def count(run) -> int:
        return sum(batch.num_rows for batch in storage.read(run))

    with ThreadPoolExecutor(workers) as pool:
        rows = sum(pool.map(count, storage.list_runs()))
    return rows, time.perf_counter() - started


def bench_baseline_read(out: Path, workers: int) -> tuple[int, float]:
    """pyarrow's defaults on the baseline files, with the same concurrency."""
    started = time.perf_counter()

    def count(path: Path) -> int:
        return sum(batch.num_rows for batch in pq.ParquetFile(path).iter_batches(batch_size=262_144))

    with ThreadPoolExecutor(workers) as pool:
        rows = sum(pool.map(count, sorted(out.glob("*.parquet"))))
    return rows, time.perf_counter() - started


def _phase(name: str, args: argparse.Namespace, scratch: Path, queue) -> None:
    """One measurement in a fresh process, so its peak RSS is its own and not an earlier phase's."""
    configure_logging("warning")
    config = demo_config(args.rows, args.runs)
    with PeakRss() as rss:
        if name == "baseline_write":
            rows, seconds = bench_baseline_write(config, scratch / "baseline")
        elif name == "ours_write":
            rows, seconds, _ = bench_ours_write(config, scratch / "ours", args.workers)
        elif name == "baseline_read":
            rows, seconds = bench_baseline_read(scratch / "baseline", args.workers)
        else:
            rows, seconds = bench_ours_read(scratch / "ours", args.workers)
    queue.put((rows, seconds, rss.peak))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="migrate-bench-", dir=args.dir))
    ctx = multiprocessing.get_context("spawn")
    results = {}
    try:
        for name in ("baseline_write", "ours_write", "baseline_read", "ours_read"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_phase, args=(name, args, scratch, queue))
            proc.start()
            results[name] = result_of(proc, queue)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counts = {name: r[0] for name, r in results.items()}
    assert len(set(counts.values())) == 1, counts
    rows = counts["ours_write"]
    rate = {name: r[0] / r[1] for name, r in results.items()}
    peak = {name: r[2] / (1024 * 1024) for name, r in results.items()}
    print(f"storage benchmark: {rows:,} rows in {args.runs} runs, {args.workers} workers, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'':22}{'ours':>14}{'baseline':>14}{'ratio':>8}")
    for op in ("write", "read"):
        ours, base = rate[f"ours_{op}"], rate[f"baseline_{op}"]
        print(f"{op + ' rows/s':22}{ours:>14,.0f}{base:>14,.0f}{ours / base:>8.2f}")
    for op in ("write", "read"):
        print(f"{'peak RSS ' + op + ' (MB)':22}{peak[f'ours_{op}']:>14,.0f}{peak[f'baseline_{op}']:>14,.0f}")
    write_ok = rate["ours_write"] >= 2_000_000
    read_ok = rate["ours_read"] >= 10_000_000
    rss_ok = max(peak["ours_write"], peak["ours_read"]) < 500
    print(f"targets: write >= 2M rows/s {'PASS' if write_ok else 'MISS'}, read >= 10M rows/s "
          f"{'PASS' if read_ok else 'MISS'}, peak RSS < 500 MB {'PASS' if rss_ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
