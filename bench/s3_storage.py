"""Object-store staging against local disk: the same export and load, whole processes, through S3 or a folder.

A moto S3 server (`moto[server]`, its threaded server mode) runs on 127.0.0.1 in this process, as the fake Pluto
server does; every figure is a separate `migrate` process from spawn to exit, alternating the two storages:

- `export --source demo` of N runs (each: float series, string series, histograms, files) into the storage;
- `load --sink pluto` of that storage into a fresh project of the fake Pluto server.

Printed: seconds and rows/s per step and storage (medians), and S3's throughput as a share of local disk's
(issue 13's target: at least 50%). moto keeps objects in memory and answers in Python: a real S3 endpoint has
more latency and more parallelism, so this measures our client path (pyarrow's S3 filesystem, multipart
uploads, the manifest-last commit, listing), not AWS.

    uv run python bench/s3_storage.py [--runs 8 --points 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--points", type=int, default=20_000, help="points per float series of a demo run")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    from tests.fakes.pluto import FakePluto

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    demo = ["--set", f"source.demo.runs={args.runs}", "--set", f"source.demo.points_per_series={args.points}"]
    migrate = [str(Path(sys.executable).parent / "migrate"), "--log-level", "warning"]
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    try:
        with FakePluto(keep_request_log=False) as srv, tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                for kind in (("disk", "s3") if rep % 2 == 0 else ("s3", "disk")):
                    work = Path(tmp) / f"{kind}-{rep}"
                    (work / "home").mkdir(parents=True)
                    env = {**os.environ, **srv.client_env(home=work / "home", pluto_dir=work / "pluto"),
                           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
                    if kind == "s3":
                        bucket = f"bench{rep}"
                        pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True, access_key="bench",
                                          secret_key="bench", region="us-east-1").create_dir(bucket)
                        paths = ["--data-path", f"s3://{bucket}/data", "--files-path", f"s3://{bucket}/files"]
                    else:
                        paths = ["--data-path", str(work / "data"), "--files-path", str(work / "files")]
                    paths += ["--set", f"storage.local_fs.state_path={work / 'state'}"]
                    for step, cmd in (("export", ["export", "--source", "demo", *demo]),
                                      ("load", ["load", "--sink", "pluto", "--set", f"sink.pluto.project={kind}{rep}"])):
                        t0 = time.perf_counter()
                        done = subprocess.run(migrate + cmd + paths + ["--json"], env=env, cwd=work, capture_output=True,
                                              text=True, timeout=900)
                        seconds = time.perf_counter() - t0
                        if done.returncode != 0:
                            raise SystemExit(f"{kind} {step} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
                        import json

                        summary = json.loads(done.stdout)
                        rows = sum(stage["rows"] for stage in summary["stages"].values())
                        results.setdefault((kind, step), []).append((seconds, rows))
                        print(f"rep {rep + 1}/{args.reps} {kind:<4} {step:<6} {seconds:6.2f} s  {rows:,} rows", flush=True)
    finally:
        server.stop()
    print()
    print(f"{args.runs} demo runs x {args.points:,} points per series; medians of {args.reps} whole processes")
    print(f"{'step':<8} {'disk s':>8} {'s3 s':>8} {'disk rows/s':>13} {'s3 rows/s':>13} {'s3 / disk':>10}")
    for step in ("export", "load"):
        disk = statistics.median(s for s, _ in results[("disk", step)])
        s3 = statistics.median(s for s, _ in results[("s3", step)])
        rows = results[("disk", step)][0][1]
        print(f"{step:<8} {disk:>8.2f} {s3:>8.2f} {rows / disk:>13,.0f} {rows / s3:>13,.0f} {disk / s3:>9.0%}")
    print("target (issue 13): S3 throughput at least 50% of local disk's for both steps")


if __name__ == "__main__":
    main()
