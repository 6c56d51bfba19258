"""What a user feels: whole processes, start to exit, loading 2M float points into a fresh fake Pluto.

One dump (4 runs x 20 metrics x 25k integer steps = 2M points, written straight through local_fs) is
made first. Each repetition then starts, in an order that rotates, as separate processes timed from
just before the spawn to the exit (subprocess wall time), each against its own new fake server:

- ours, lean venv   `migrate load --sink pluto` from a venv holding only migrate-ml, migrate-ml-local-fs,
                    migrate-ml-pluto and their real dependencies minus pluto-ml (what users of a pluto-ml-free
                    migrate-ml-pluto get; built here with uv, skipped with `--no-lean`);
- ours, dev venv    the same console script from the workspace venv, where pluto-ml's `.pth` hook runs at
                    every interpreter start;
- pluto-ml tuned    the unmodified pluto-ml client in its own process: `pluto.init` per run (console and
                    system metrics off, sync batch 5000, flush 0.05 s), `op._log_metrics_batch` of 2000 steps
                    with backpressure on the pending count, `finish()`. Its input is the same points already
                    grouped per step in a pickle (loading it is part of its time and is printed apart), so
                    it pays no parquet decoding that ours does.

After every process the fake's stored points are counted: each method must land all 2M (else it aborts).
Phases of ours come from outside: start-up is the median wall time of an interpreter importing the load
path (`migrate --help` and a bare interpreter are shown too); the rest are the fake's arrival times of
requests relative to the spawn: first request (run create), first metrics body fully received, last
metrics answer, last request (final status and read-back), process exit.

    uv run python bench/pluto_process.py [--reps 5] [--workers 4] [--runs 4 --metrics 20 --steps 25000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD_PATH_IMPORTS = "import migrate_core.cli, migrate_core.orchestrator, migrate_local_fs.storage, migrate_pluto.sink"


# ------------------------------------------------------------------------------------------- baseline worker


def baseline_worker(args: argparse.Namespace) -> None:
    """Runs in its own process: the tuned pluto-ml upload of the pickled points. Prints its own marks."""
    t_start = time.time()
    import pluto

    t_import = time.time()
    with open(args.baseline_worker, "rb") as f:
        data = pickle.load(f)
    t_data = time.time()
    url = os.environ["PLUTO_URL_API"]
    settings = {"url_app": url, "url_api": url, "url_ingest": url, "url_py": url,
                "disable_console": True, "disable_system_metrics": True,
                "sync_process_batch_size": 5000, "sync_process_flush_interval": 0.05,
                "sync_process_shutdown_timeout": 600}
    marks = []
    for run_id, steps in data:
        t0 = time.time()
        op = pluto.init(project=args.project, name=run_id, run_id=f"bench:{run_id}", settings=dict(settings))
        t1 = time.time()
        for i in range(0, len(steps), 2000):
            op._log_metrics_batch(steps[i : i + 2000])
            for _ in range(60_000):  # bounded: at most ~10 min of backpressure per batch
                if op._sync_manager.get_pending_count() <= 20_000:
                    break
                time.sleep(0.01)
        t2 = time.time()
        op.finish()
        marks.append({"init": t0, "inited": t1, "logged": t2, "finished": time.time()})
    print(json.dumps({"start": t_start, "imported": t_import, "data": t_data, "runs": marks}))


# ------------------------------------------------------------------------------------------- setup


def make_dump(root: Path, runs: int, metrics: int, steps: int) -> int:
    """`runs` runs of `metrics` float series sharing integer steps 0..steps-1, written through local_fs."""
    import numpy as np
    import pyarrow as pa
    from migrate_core.format import make_batch, steps_from_units, timestamps_ms
    from migrate_local_fs.storage import LocalFsStorage

    storage = LocalFsStorage(root / "data", root / "files")
    k = np.arange(steps, dtype=np.int64)
    for r in range(runs):
        run_id = f"RUN-{r + 1}"
        writer = storage.begin_run("bench/process", run_id, {"plugin": "neptune3"})
        for m in range(metrics):
            writer.write(make_batch(
                "bench/process", run_id, f"train/metric_{m:02d}", "float_series", steps,
                step=steps_from_units(k * 1_000_000),
                timestamp=timestamps_ms(1_700_000_000_000 + r * 3_600_000 + k * 250),
                float_value=pa.array(np.sin(k * 0.001 + m) + r, type=pa.float64())))
        writer.commit()
    return runs * metrics * steps


def baseline_input(dump: Path, target: Path) -> int:
    """The dump's points grouped per step as pluto-ml's batch API takes them: [(run, [(dict, step, s)])]."""
    import pyarrow.compute as pc
    from migrate_core.format import plain, step_units
    from migrate_local_fs.storage import LocalFsStorage

    storage = LocalFsStorage(dump / "data", dump / "files")
    out, points = [], 0
    for run in sorted(storage.list_runs(), key=lambda r: r.run_id):
        rows: dict[int, tuple[dict, float]] = {}
        for batch in storage.read(run, columns=["attribute_path", "attribute_type", "step", "timestamp",
                                                "float_value"]):
            table = plain(batch)
            table = table.filter(pc.equal(table["attribute_type"], "float_series"))
            steps = (step_units(table["step"]) // 1_000_000).tolist()
            times = table["timestamp"].cast("int64").to_pylist()
            for name, step, t, v in zip(table["attribute_path"].to_pylist(), steps, times,
                                        table["float_value"].to_pylist(), strict=True):
                rows.setdefault(step, ({}, t / 1000))[0][name] = v
                points += 1
        out.append((run.run_id, [(d, s, t) for s, (d, t) in sorted(rows.items())]))
    with open(target, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    return points


def lean_venv(target: Path) -> Path | None:
    """A venv with our three packages (editable, no deps) plus their real dependencies pinned to uv.lock,
    without pluto-ml. Returns its bin folder, or None (printed why) when uv cannot build it."""
    uv = [shutil.which("uv")] if shutil.which("uv") else ["python3", "-m", "uv"]
    try:
        constraints = subprocess.run(uv + ["export", "--frozen", "--no-hashes", "--all-packages",
                                           "--no-emit-workspace", "-q"], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout
        (target.parent / "constraints.txt").write_text(constraints)
        subprocess.run(uv + ["venv", "-q", "--python", sys.executable, str(target)], check=True, capture_output=True)
        python = str(target / "bin" / "python")
        # migrate-ml-pluto declares what it needs and pluto-ml is not among it: the packages' own dependencies,
        # pinned to the lock, are what a user's venv holds
        subprocess.run(uv + ["pip", "install", "-q", "--compile-bytecode", "--python", python, "-c",
                             str(target.parent / "constraints.txt"),
                             "-e", str(ROOT / "core"), "-e", str(ROOT / "plugins/local_fs"),
                             "-e", str(ROOT / "plugins/pluto")], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"lean venv skipped: {getattr(exc, 'stderr', '') or exc}", flush=True)
        return None
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('pluto') is None)"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "True":
        raise SystemExit("the lean venv unexpectedly holds pluto-ml")
    return target / "bin"


# ------------------------------------------------------------------------------------------- measuring


def timed_fake():
    from tests.fakes.pluto import FakePluto

    class TimedFake(FakePluto):
        """Notes (arrival, answered, endpoint, Pluto run id) per request; arrival is when the whole body has
        been read. The run id comes from the X-Run-Id header, the JSON body's runId, or create's answer."""

        def __init__(self) -> None:
            super().__init__(keep_request_log=False)
            self.seen: list[tuple[float, float, str, int | None]] = []

        def _handle(self, req):  # noqa: ANN001 - the fake's own request type
            arrived = time.time()
            response = super()._handle(req)
            run = req.headers.get("x-run-id")
            if run is None and req.path.startswith("/api/") and req.body[:1] == b"{":
                source = response.body if req.path == "/api/runs/create" else req.body
                with contextlib.suppress(ValueError, AttributeError):
                    run = json.loads(source).get("runId")
            run = str(run) if run is not None else ""
            self.seen.append((arrived, time.time(), f"{req.method} {req.path}", int(run) if run.isdigit() else None))
            return response

    return TimedFake()


def stored_points(srv, project: str) -> int:
    with srv.state.lock:
        p = srv.state.projects.get(project)
        return sum(len(s) for r in (p.runs if p else []) for s in r.metrics.values())


def run_once(method: str, cmd: list[str], env_extra: dict[str, str], project: str, scratch: Path,
             expected: int) -> dict:
    home = scratch / "home"
    home.mkdir(parents=True)
    with timed_fake() as srv:
        env = {**os.environ, **srv.client_env(home=home, pluto_dir=home / "pluto"), **env_extra}
        for key in ("VIRTUAL_ENV", "PYTHONPATH", "PLUTO_RUN_ID", "PLUTO_PROJECT"):
            env.pop(key, None)
        cmd = [part.replace("{STATE}", str(scratch / "state")) for part in cmd]
        kids0, own0 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.time()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=home, timeout=900)
        t_exit = time.time()
        kids1, own1 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        if done.returncode != 0:
            raise SystemExit(f"{method} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        time.sleep(0.05)  # the last answer's bookkeeping in the fake's handler thread
        stored = stored_points(srv, project)
        seen = sorted(srv.seen)
    if stored != expected:
        raise SystemExit(f"{method}: the fake holds {stored:,} points, expected {expected:,}")
    metrics = [s for s in seen if s[2] == "POST /ingest/metrics"]
    before, create_to_body = [], []
    for run in {s[3] for s in metrics}:
        mine = [s for s in seen if s[3] == run]
        first = next(i for i, s in enumerate(mine) if s[2] == "POST /ingest/metrics")
        before.append(", ".join(s[2].split(" ", 1)[1].removeprefix("/api/runs/") for s in mine[:first]))
        create_to_body.append(mine[first][0] - mine[0][0])
    result = {
        "wall": t_exit - t0,
        "first_request": seen[0][0] - t0,
        "first_metrics": metrics[0][0] - t0,
        "last_metrics": max(s[1] for s in metrics) - t0,
        "last_request": max(s[1] for s in seen) - t0,
        "requests": len(seen),
        "metrics_requests": len(metrics),
        "stored": stored,
        "create_to_body": statistics.median(create_to_body),
        "before_body": max(set(before), key=before.count),
        "client_cpu": kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime,
        "fake_cpu": own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime,
    }
    events = log_events(done.stderr)
    if "command_ready" in events:
        result["ready"] = events["command_ready"][0] - t0
        result["first_scanned"] = events["run_scanned"][0] - t0
        result["last_scanned"] = events["run_scanned"][-1] - t0
    if method == "pluto-ml tuned":
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        result["imported"] = marks["imported"] - t0
        result["data_loaded"] = marks["data"] - t0
        result["per_run_init"] = statistics.median(r["inited"] - r["init"] for r in marks["runs"])
        result["per_run_finish"] = statistics.median(r["finished"] - r["logged"] for r in marks["runs"])
    return result


def log_events(stderr: str) -> dict[str, list[float]]:
    """Epoch times of our JSON log lines (`--log-level debug`), by event name, in order."""
    from datetime import datetime

    events: dict[str, list[float]] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(line)
            events.setdefault(record["event"], []).append(datetime.fromisoformat(record["timestamp"]).timestamp())
    return events


def wall(cmd: list[str], reps: int) -> float:
    """Median wall time of a short command (start-up probes)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--metrics", type=int, default=20, help="float series per run")
    ap.add_argument("--steps", type=int, default=25_000, help="steps per series")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of every method (alternated)")
    ap.add_argument("--workers", type=int, default=4, help="ours: runs loaded at once")
    ap.add_argument("--no-lean", action="store_true", help="skip the venv without pluto-ml")
    ap.add_argument("--no-baseline", action="store_true", help="ours only (no ratio)")
    ap.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_worker:
        baseline_worker(args)
        return

    sys.path.insert(0, str(ROOT))
    dev_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="pluto-process-") as tmp:
        root = Path(tmp)
        expected = make_dump(root / "dump", args.runs, args.metrics, args.steps)
        print(f"dump: {expected:,} float points, {args.runs} runs x {args.metrics} metrics x {args.steps:,} steps",
              flush=True)
        methods: dict[str, list[str]] = {}
        venvs: dict[str, Path] = {}
        if not args.no_lean:
            lean = lean_venv(root / "lean-venv")
            if lean is not None:
                venvs["ours, lean venv (no pluto-ml)"] = lean
        venvs["ours, dev venv (pluto-ml .pth)"] = dev_bin
        for name, bin_dir in venvs.items():
            methods[name] = [str(bin_dir / "migrate"), "--log-level", "debug", "--log-format", "json", "load",
                             "--sink", "pluto",
                             "--data-path", str(root / "dump" / "data"), "--files-path", str(root / "dump" / "files"),
                             "--set", "storage.local_fs.state_path={STATE}", "--set", "sink.pluto.project=bench",
                             "--workers", str(args.workers)]
        if not args.no_baseline:
            pkl = root / "baseline.pkl"
            if baseline_input(root / "dump", pkl) != expected:
                raise SystemExit("baseline input does not hold every point")
            methods["pluto-ml tuned"] = [sys.executable, str(Path(__file__).resolve()), "--baseline-worker", str(pkl),
                                         "--project", "bench"]

        probes: dict[str, dict[str, list[float]]] = {name: {} for name in venvs}
        base_import: list[float] = []

        def probe_startup() -> None:
            """One sample of each start-up probe per venv (taken between repetitions, as loaded as they)."""
            for name, bin_dir in venvs.items():
                for probe, cmd in (("python -c pass", [str(bin_dir / "python"), "-c", "pass"]),
                                   ("migrate --help", [str(bin_dir / "migrate"), "--help"]),
                                   ("import load path", [str(bin_dir / "python"), "-c", LOAD_PATH_IMPORTS])):
                    probes[name].setdefault(probe, []).append(wall(cmd, 1))
            if "pluto-ml tuned" in methods:
                base_import.append(wall([sys.executable, "-c", "import pluto"], 1))

        results: dict[str, list[dict]] = {name: [] for name in methods}
        names = list(methods)
        for rep in range(args.reps):
            probe_startup()
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                scratch = root / "scratch" / f"{rep}-{names.index(name)}"
                results[name].append(run_once(name, methods[name], {}, "bench", scratch, expected))
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{n} {results[n][-1]['wall']:.2f} s" for n in names),
                  flush=True)

    startup = {n: {p: statistics.median(v) for p, v in d.items()} for n, d in probes.items()}
    report(results, startup, statistics.median(base_import) if base_import else 0.0, expected, args)


def report(results: dict[str, list[dict]], startup: dict, baseline_import: float, expected: int,
           args: argparse.Namespace) -> None:
    med = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0] if key != "before_body"}
           for name, rs in results.items()}
    print()
    print(f"whole processes, spawn to exit, {args.reps} repetitions each (alternated), every point counted back")
    print(f"{'method':<32} {'median s':>9} {'min s':>7} {'max s':>7} {'points/s':>11} {'client CPU s':>13} "
          f"{'fake CPU s':>11} {'requests':>9} {'stored':>10}")
    for name, rs in results.items():
        walls = [r["wall"] for r in rs]
        print(f"{name:<32} {med[name]['wall']:>9.2f} {min(walls):>7.2f} {max(walls):>7.2f} "
              f"{expected / med[name]['wall']:>11,.0f} {med[name]['client_cpu']:>13.2f} {med[name]['fake_cpu']:>11.2f} "
              f"{med[name]['requests']:>9.0f} {rs[0]['stored']:>10,}")
    base = results.get("pluto-ml tuned")
    if base:
        for name, rs in results.items():
            if name == "pluto-ml tuned":
                continue
            pairs = [b["wall"] / o["wall"] for b, o in zip(base, rs, strict=True)]
            print(f"pluto-ml tuned / {name}: {med['pluto-ml tuned']['wall'] / med[name]['wall']:.1f}x "
                  f"(medians); per repetition {min(pairs):.1f}x-{max(pairs):.1f}x, median {statistics.median(pairs):.1f}x")

    print()
    print("phases of ours (medians of seconds; marks: our debug log lines and the fake's request times)")
    cols = ["start-up", "plan", "to 1st body", "stream", "finish", "exit", "total"]
    print(f"{'method':<32} " + " ".join(f"{c:>11}" for c in cols))
    for name in startup:
        phases = [[r["ready"], r["first_scanned"] - r["ready"], r["first_metrics"] - r["first_scanned"],
                   r["last_metrics"] - r["first_metrics"], r["last_request"] - r["last_metrics"],
                   r["wall"] - r["last_request"], r["wall"]] for r in results[name]]
        values = [statistics.median(p[i] for p in phases) for i in range(len(cols))]
        print(f"{name:<32} " + " ".join(f"{v:>11.3f}" for v in values))
    print("  start-up: spawn -> `command_ready` (interpreter, imports, config, plugin discovery, storage and sink built);")
    print("  plan: -> the first `run_scanned` (storage listing, ledger, the first run's scan: 4 runs scan at once);")
    print("  to 1st body: -> the first metrics body fully received (create, heartbeat, tags and log names round")
    print("    trips, state file, then the first 50k points read, encoded and sent);")
    print("  stream: -> the last metrics answer; finish: -> the last request (final status, read-back);")
    print("  exit: -> the process is gone (state, ledger, summary, interpreter teardown)")
    for name in startup:
        m = med[name]
        print(f"  {name}: first create request at {m['first_request']:.3f} s, last run scanned at "
              f"{m['last_scanned']:.3f} s")
    for name in startup:
        rs = results[name]
        print(f"  {name}: per run, {med[name]['create_to_body']:.3f} s from its create to its first metrics body "
              f"received; requests before it: {rs[0]['before_body']}")
    for name, probes in startup.items():
        print(f"  start-up probes, {name}: " + ", ".join(f"{p} {v:.3f} s" for p, v in probes.items()))
    if base:
        m = med["pluto-ml tuned"]
        print(f"  pluto-ml tuned: import pluto {baseline_import:.3f} s (alone), imported at {m['imported']:.3f} s, "
              f"input unpickled at {m['data_loaded']:.3f} s, first request {m['first_request']:.3f} s, first metrics "
              f"body {m['first_metrics']:.3f} s; per run: init {m['per_run_init']:.3f} s, finish after the last "
              f"batch {m['per_run_finish']:.3f} s; last request {m['last_request']:.3f} s, exit {m['wall']:.3f} s")


if __name__ == "__main__":
    main()
