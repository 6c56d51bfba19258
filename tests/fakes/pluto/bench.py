"""Measure the fake's metrics-ingest rate: ``python -m tests.fakes.pluto.bench [--points N]``.

The fake runs in this process; the HTTP senders run in separate processes so that the figure
reflects the server alone.  Bodies look exactly like the sync worker's (``json.dumps`` per
line, ``\\n``-terminated).  Reported: wall-clock points/s and points per CPU-second of the
server process (what "points/s on one core" means).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import resource
import time

from .server import FakePluto


def _body(start: int, lines: int, metrics: int) -> bytes:
    out = []
    for i in range(start, start + lines):
        data = {f"train/metric_{j}": i * 0.001 + j for j in range(metrics)}
        out.append(json.dumps({"time": 1_700_000_000_000 + i, "step": i, "data": data}))
    return ("\n".join(out) + "\n").encode()


def _sender(port: int, key: str, run_id: int, requests: int, lines: int, metrics: int, go: mp.Event) -> None:
    bodies = [_body(k * lines, lines, metrics) for k in range(min(requests, 8))]
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/x-ndjson",
        "X-Run-Id": str(run_id),
        "X-Project-Name": "bench",
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    go.wait()
    for k in range(requests):
        conn.request("POST", "/ingest/metrics", body=bodies[k % len(bodies)], headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"unexpected status {resp.status}")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--lines", type=int, default=5000, help="NDJSON lines per request")
    ap.add_argument("--metrics", type=int, default=10, help="metrics per line")
    ap.add_argument("--senders", type=int, default=1, help="parallel sender processes (one run each)")
    ap.add_argument("--exact", action="store_true", help="disable the pyarrow fast path")
    args = ap.parse_args()

    per_request = args.lines * args.metrics
    requests = max(1, args.points // per_request // args.senders)
    ctx = mp.get_context("spawn")
    with FakePluto(fast_ingest=not args.exact, keep_request_log=False) as srv:
        go = ctx.Event()
        procs = [
            ctx.Process(
                target=_sender, args=(srv.port, srv.api_key, i + 1, requests, args.lines, args.metrics, go)
            )
            for i in range(args.senders)
        ]
        for p in procs:
            p.start()
        time.sleep(1.0 + 0.2 * args.senders)  # let the senders build their bodies
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        total = srv.total_metric_rows()
        t1 = time.perf_counter()
        kept = sum(len(s) for d in srv.state.run_data.values() for s in d.metrics.values())
        read = time.perf_counter() - t1
    mode = "exact" if args.exact else "fast"
    print(
        f"[{mode}] {total:,} points in {wall:.2f}s wall = {total / wall / 1e6:.2f} M points/s; "
        f"server CPU {cpu:.2f}s = {total / max(cpu, 1e-9) / 1e6:.2f} M points per CPU-second; "
        f"dedup read of {kept:,} points took {read:.2f}s; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
