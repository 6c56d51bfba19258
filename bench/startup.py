"""Start-up of the `migrate` command: whole processes, from the spawn to the exit.

Measures, as separate processes of the console script of one venv (default: the one running this):

- `python -c pass`        the baseline: an interpreter of that venv starting and exiting (its site and `.pth`
                          hooks included: pluto-ml's wandb hook imports pluto at every start of the dev venv);
- `migrate --help`        the help of the root command (typer + rich rendering, no plugin loaded);
- `migrate --version`
- `migrate plugins list`  entry-point discovery: every installed plugin imported.

Each repetition runs all of them once, in an order that rotates, so a noisy neighbour or a cold cache
hits each alike. Printed: the median and the fastest of N runs in seconds, the median's ratio to the
baseline's, and the milliseconds above it (what our code and its imports cost). `migrate --help` should
stay under 0.3 s (README, issue 12); tests never assert wall time.

    uv run python bench/startup.py [--reps 20] [--bin .venv/bin]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HELP_BUDGET = 0.3  # seconds, for `migrate --help`


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20, help="runs of each command (median of them)")
    ap.add_argument("--bin", type=Path, default=Path(sys.executable).parent,
                    help="bin folder of the venv to measure (default: this interpreter's)")
    args = ap.parse_args()
    python, migrate = args.bin / "python", args.bin / "migrate"
    if not migrate.exists():
        raise SystemExit(f"no migrate console script in {args.bin}: `uv sync` first, or pass --bin")
    env = {**os.environ, "COLUMNS": "80"}
    cases = {
        "python -c pass": [str(python), "-c", "pass"],
        "migrate --help": [str(migrate), "--help"],
        "migrate --version": [str(migrate), "--version"],
        "migrate plugins list": [str(migrate), "plugins", "list"],
    }
    for cmd in cases.values():  # warm the page cache and the bytecode once; not measured
        timed(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(timed(cases[name], env))

    base = statistics.median(times["python -c pass"])
    print(f"start-up of {migrate} ({args.reps} runs each, {os.cpu_count()} cores)")
    print(f"{'command':<22} {'median s':>9} {'fastest s':>10} {'x baseline':>11} {'above ms':>9}")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"{name:<22} {median:>9.3f} {min(ts):>10.3f} {median / base:>11.2f} {(median - base) * 1000:>9.0f}")
    help_s = statistics.median(times["migrate --help"])
    verdict = "within" if help_s < HELP_BUDGET else "OVER"
    print(f"migrate --help: {help_s:.3f} s, {verdict} the {HELP_BUDGET} s budget")


if __name__ == "__main__":
    main()
