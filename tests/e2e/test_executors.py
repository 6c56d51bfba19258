"""`--executor dask|processes` end to end: the real CLI, a real Dask scheduler and two `dask worker`s started
here as subprocesses, the demo source and the fake Pluto server. What a distributed export or load leaves
(rows, manifests' counts, files' sha256; the sink's runs; the ledger) equals the default threads' result, and
the runs really ran on both workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from migrate_core.ledger import Ledger
from migrate_core.testing import tables_equal
from migrate_local_fs.storage import LocalFsStorage

from tests.fakes.pluto import FakePluto
from tests.fakes.pluto.fixtures import fake_pluto_module  # noqa: F401 - fixture
from tests.plugins.pluto.helpers import snapshot

distributed = pytest.importorskip("distributed")

RUNS = 4  # the demo's last run is a fork of its first: loads keep parents before forks
DEMO = ["--set", f"source.demo.runs={RUNS}", "--set", "source.demo.points_per_series=300",
        "--set", "source.demo.string_series_lines=20", "--set", "source.demo.histogram_steps=3"]
IDS = [f"DEMO-{i}" for i in range(1, RUNS + 1)]
DASK = Path(sys.executable).parent / "dask"


@pytest.fixture(scope="module")
def base_env(fake_pluto_module: FakePluto, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
             ) -> dict[str, str]:
    """The Pluto client environment, for the CLI and for the Dask workers (started before any test)."""
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, **fake_pluto_module.client_env(home=home, pluto_dir=home / "pluto"), "PYTHONUNBUFFERED": "1"}
    for key in ("PLUTO_RUN_ID", "PLUTO_PROJECT", "MLOP_API_TOKEN", "MIGRATE_PROCESS_CHILD"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def scheduler(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set[str]]]:
    """A `dask scheduler` on a free port and two single-threaded `dask worker`s: the scheduler's address, and
    the workers as an Outcome names them (host:pid)."""
    work = tmp_path_factory.mktemp("dask")
    info = work / "scheduler.json"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], env=base_env, cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        address = json.loads(info.read_text())["address"]
        for i in range(2):
            procs.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--no-dashboard", "--name", f"w{i}", "--local-directory", str(work)],
                                          env=base_env, cwd=work, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            pids = set(client.run(os.getpid).values())
        yield address, {f"{socket.gethostname()}:{pid}" for pid in pids}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run(env: dict[str, str], cwd: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "migrate_core.cli", "--log-level", "warning", *args, "--json",
                           "--no-progress"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert fake_pluto_key(env) not in done.stdout + done.stderr
    return json.loads(done.stdout)


def fake_pluto_key(env: dict[str, str]) -> str:
    return env["PLUTO_API_KEY"]


def _content(root: Path) -> dict[str, tuple[pa.Table, dict, list]]:
    """Every stored run's rows, its manifest's counts, and its files (path, size, sha256)."""
    storage = LocalFsStorage(root / "data", root / "files")
    out = {}
    for run in storage.list_runs():
        assert run.complete, run.problem
        manifest = run.manifest or {}
        counts = {k: manifest.get(k) for k in ("rows", "status", "lineage")}
        files = sorted((f["path"], f["size"], f["sha256"]) for f in manifest["files"])
        out[run.run_id] = (pa.Table.from_batches(list(storage.read(run))), counts, files)
    return out


def _workers(summary: dict) -> set[str]:
    return {r["worker"] for r in summary["runs"] if r["status"] == "ok"}


def _paths(root: Path) -> list[str]:
    return ["--data-path", str(root / "data"), "--files-path", str(root / "files")]


def _same_exports(a: Path, b: Path) -> None:
    local, other = _content(a), _content(b)
    assert sorted(local) == sorted(other) == IDS
    for run_id, (table, counts, files) in local.items():
        assert tables_equal(other[run_id][0], table), run_id
        assert other[run_id][1] == counts, run_id
        assert other[run_id][2] == files and files, run_id


def _ledger(root: Path, target_project: str) -> dict[str, tuple[str, int]]:
    ledger = Ledger(LocalFsStorage(root / "data", root / "files").state_dir())
    try:
        return {e.run_id: (e.state, e.counts.get("rows")) for e in ledger.entries() if target_project in e.target}
    finally:
        ledger.close()


def _entry(root: Path, target_project: str, run_id: str):
    ledger = Ledger(LocalFsStorage(root / "data", root / "files").state_dir())
    try:
        return next(e for e in ledger.entries() if target_project in e.target and e.run_id == run_id)
    finally:
        ledger.close()


def _snapshots(srv: FakePluto, project: str) -> dict:
    return {run_id: snapshot(srv, project, f"demo:demo/project:{run_id}") for run_id in IDS}


def test_dask_export_and_load_equal_the_threads(scheduler, base_env, fake_pluto_module, tmp_path):  # noqa: F811
    srv = fake_pluto_module
    address, workers = scheduler
    sink = ["--sink", "pluto", "--set", "sink.pluto.retries=1", "--set", "sink.pluto.backoff=0.01"]
    local, remote = tmp_path / "local", tmp_path / "remote"
    _run(base_env, tmp_path, "export", "--source", "demo", *DEMO, *_paths(local))
    exported = _run(base_env, tmp_path, "export", "--source", "demo", *DEMO, *_paths(remote),
                    "--executor", "dask", "--dask-address", address)
    assert exported["stages"]["export"]["ok"] == RUNS
    assert _workers(exported) == workers, exported["runs"]  # both `dask worker`s exported runs
    _same_exports(local, remote)

    reference = _run(base_env, tmp_path, "load", *sink, *_paths(local), "--set", "sink.pluto.project=threads")
    loaded = _run(base_env, tmp_path, "load", *sink, *_paths(remote), "--set", "sink.pluto.project=dask",
                  "--executor", "dask", "--dask-address", address)
    assert loaded["stages"]["load"]["ok"] == RUNS
    assert loaded["losses"] == reference["losses"]  # what Pluto cannot hold is counted the same
    assert _workers(loaded) == workers, loaded["runs"]
    threads, dask = _snapshots(srv, "threads"), _snapshots(srv, "dask")
    assert all(threads.values()) and dask == threads
    assert dask[IDS[-1]]["fork"][0] == f"demo:demo/project:{IDS[0]}"  # the fork kept its parent
    rows = {r["run_id"]: r["rows"] for r in loaded["runs"]}
    assert _ledger(remote, "/dask") == {run_id: ("done", rows[run_id]) for run_id in IDS}
    parent, fork = (_entry(remote, "/dask", run_id) for run_id in (IDS[0], IDS[-1]))
    assert fork.started_at is not None and fork.started_at >= parent.updated_at  # sent after its parent's load
    # the ledger says done: a second load sends nothing
    again = _run(base_env, tmp_path, "load", *sink, *_paths(remote), "--set", "sink.pluto.project=dask",
                 "--executor", "dask", "--dask-address", address)
    assert again["stages"]["load"]["skipped"] == RUNS


def test_processes_run_equals_the_threads(base_env, fake_pluto_module, tmp_path):  # noqa: F811
    srv = fake_pluto_module
    sink = ["--sink", "pluto", "--set", "sink.pluto.retries=1", "--set", "sink.pluto.backoff=0.01"]
    local, pool = tmp_path / "local", tmp_path / "pool"
    reference = _run(base_env, tmp_path, "run", "--source", "demo", *DEMO, *sink, *_paths(local),
                     "--set", "sink.pluto.project=run-threads")
    done = _run(base_env, tmp_path, "run", "--source", "demo", *DEMO, *sink, *_paths(pool),
                "--set", "sink.pluto.project=run-processes", "--executor", "processes", "--workers", "2")
    assert done["stages"]["export"]["ok"] == done["stages"]["load"]["ok"] == RUNS
    assert len(_workers(done)) == 2, done["runs"]  # two pool processes, neither of them the command's own
    assert done["losses"] == reference["losses"] and done["stages"] == reference["stages"]
    _same_exports(local, pool)
    threads, processes = _snapshots(srv, "run-threads"), _snapshots(srv, "run-processes")
    assert all(threads.values()) and processes == threads
    assert set(_ledger(pool, "/run-processes").values()) == {("done", r["rows"]) for r in done["runs"]
                                                             if r["stage"] == "load"}


def test_an_unreachable_scheduler_is_one_clear_line(base_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "migrate_core.cli", "export", "--source", "demo", *DEMO,
                           *_paths(tmp_path), "--executor", "dask", "--dask-address", "tcp://127.0.0.1:9",
                           "--no-progress"],
                          env={**base_env, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_dask_without_distributed_installed_says_how_to_get_it(migrate, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails as if not installed
    monkeypatch.delitem(sys.modules, "migrate_core.dask", raising=False)
    result = migrate("export", "--source", "demo", *DEMO, *_paths(tmp_path), "--executor", "dask")
    assert result.code == 2, result.out + result.err
    assert "pip install 'migrate-ml[dask]'" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "data").exists()  # nothing ran locally instead


def test_processes_and_dask_address_are_refused_with_the_fix(migrate, tmp_path):
    both = migrate("export", "--source", "demo", *_paths(tmp_path), "--processes", "2", "--executor", "processes")
    assert both.code == 2 and "--processes and --executor processes: choose one" in both.err
    stray = migrate("load", "--sink", "pluto", *_paths(tmp_path), "--dask-address", "tcp://127.0.0.1:8786")
    assert stray.code == 2 and "add --executor dask" in stray.err, stray.err
