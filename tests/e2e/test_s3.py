"""local_fs on S3, end to end through the CLI against a real S3 API server on 127.0.0.1 (moto's server mode),
read and written by pyarrow's S3 client: export -> inspect -> load into the fake Pluto server equals the same
through local disk; a kill -9 mid-export leaves nothing inspect calls complete and a rerun is equal; a missing
bucket or an unreachable endpoint is one clear line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from migrate_core.format import sanitize_path_part as S
from migrate_core.ledger import LEDGER_FILE
from migrate_core.testing import StorageContract, tables_equal
from migrate_local_fs.objstore import ObjectStoreStorage
from migrate_local_fs.storage import LocalFsStorage
from moto.server import ThreadedMotoServer

from tests.fakes.pluto import FakePluto
from tests.fakes.pluto.fixtures import fake_pluto_module  # noqa: F401 - fixture
from tests.plugins.pluto.helpers import snapshot

DEMO = ["--set", "source.demo.runs=3", "--set", "source.demo.points_per_series=400",
        "--set", "source.demo.string_series_lines=40", "--set", "source.demo.histogram_steps=5"]
SINK = ["--set", "sink.pluto.retries=1", "--set", "sink.pluto.backoff=0.01"]
KILL_POINTS = 40_000  # long enough for the kill to land in DEMO-2's export
S3 = ["--data-path", "s3://bucket/data", "--files-path", "s3://bucket/files"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDSECRETPROBE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-printed",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on an ephemeral 127.0.0.1 port; its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def env(s3: str, fake_pluto_module: FakePluto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
        ) -> dict[str, str]:
    """A fresh bucket, and the AWS and Pluto client environment, in this process and for subprocesses."""
    bucket = f"bucket{time.monotonic_ns()}"
    admin = pafs.S3FileSystem(endpoint_override=s3, allow_bucket_creation=True, access_key="x", secret_key="x",
                              region="us-east-1")
    admin.create_dir(bucket)
    values = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3, "BUCKET": bucket,
              **fake_pluto_module.client_env(home=tmp_path / "home", pluto_dir=tmp_path / "pluto")}
    (tmp_path / "home").mkdir(exist_ok=True)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "PLUTO_RUN_ID", "PLUTO_PROJECT", "MLOP_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


class TestObjectStoreContract(StorageContract):
    """The storage contract every backend keeps, on S3."""

    @pytest.fixture
    def storage(self, env, tmp_path):
        return ObjectStoreStorage(f"s3://{env['BUCKET']}/data", f"s3://{env['BUCKET']}/files",
                                  state_path=tmp_path / "state")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrate_core.cli", "--log-level", "warning", *args]


def _run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in done.stdout + done.stderr
    return done


def _s3(env: dict[str, str]) -> list[str]:
    bucket = env["BUCKET"]
    return ["--data-path", f"s3://{bucket}/data", "--files-path", f"s3://{bucket}/files"]


def _snapshots(srv: FakePluto, project: str) -> dict:
    return {i: snapshot(srv, project, f"demo:demo/project:DEMO-{i}") for i in (1, 2, 3)}


def _inspect(env: dict[str, str], *storage: str) -> dict[str, bool]:
    done = _run(env, "inspect", *storage, "--json", ok=False)
    return {r["run_id"]: r["complete"] for r in json.loads(done.stdout)}


def test_export_inspect_load_through_s3_equals_local_disk(env, fake_pluto_module):  # noqa: F811
    srv = fake_pluto_module
    _run(env, "export", "--source", "demo", *DEMO)  # the reference, on local disk
    _run(env, "load", "--sink", "pluto", *SINK, "--set", "sink.pluto.project=disk")

    _run(env, "export", "--source", "demo", *DEMO, *_s3(env))
    assert _inspect(env, *_s3(env)) == {"DEMO-1": True, "DEMO-2": True, "DEMO-3": True}
    fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key="x", secret_key="x",
                           region="us-east-1")
    objects = {i.path for i in fs.get_file_info(pafs.FileSelector(env["BUCKET"], recursive=True))
               if i.type == pafs.FileType.File}
    project, run = S("demo/project"), S("DEMO-1")
    assert f"{env['BUCKET']}/data/{project}/{run}_part_0.parquet" in objects
    assert any(p.startswith(f"{env['BUCKET']}/files/{project}/{run}/") for p in objects)
    assert not any(p.endswith(".tmp") for p in objects)

    _run(env, "load", "--sink", "pluto", *SINK, "--set", "sink.pluto.project=s3", *_s3(env))
    assert (Path("migrate-state/s3", env["BUCKET"], "data") / LEDGER_FILE).is_file()  # local, named by the URL
    disk, s3 = _snapshots(srv, "disk"), _snapshots(srv, "s3")
    assert all(disk.values()) and s3 == disk
    assert _run(env, "verify", "--sink", "pluto", *SINK, "--set", "sink.pluto.project=s3", *_s3(env)).returncode == 0
    # a second export sends nothing: the ledger (local) and the manifests (on S3) agree that all is done
    again = json.loads(_run(env, "export", "--source", "demo", *DEMO, *_s3(env), "--json").stdout)
    assert again["stages"]["export"]["skipped"] == 3


def _content(storage) -> dict[str, tuple[pa.Table, list]]:
    """Every run's rows and files (names, sizes, sha256) as a storage reads them back."""
    out = {}
    for run in storage.list_runs():
        assert run.complete, run.problem
        files = sorted((f["path"], f["size"], f["sha256"]) for f in run.manifest["files"])
        out[run.run_id] = (pa.Table.from_batches(list(storage.read(run))), files)
    return out


def test_kill_9_mid_export_leaves_nothing_complete_and_a_rerun_is_equal(env, tmp_path):
    big = [*DEMO, "--set", f"source.demo.points_per_series={KILL_POINTS}", "--workers", "1"]
    _run(env, "export", "--source", "demo", *big)  # the reference, uninterrupted, on local disk

    fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key="x", secret_key="x",
                           region="us-east-1")
    manifest = f"{env['BUCKET']}/data/{S('demo/project')}/{S('DEMO-2')}.manifest.json"
    victim = subprocess.Popen(_cli("export", "--source", "demo", *big, *_s3(env)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while victim.poll() is None and time.monotonic() < deadline:
            if fs.get_file_info(manifest).type == pafs.FileType.File:
                break  # DEMO-2 began: its "writing" manifest is there, its parts are being uploaded
            time.sleep(0.002)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    with fs.open_input_stream(manifest) as handle:
        assert json.loads(handle.read())["status"] == "writing"
    state = _inspect(env, *_s3(env))
    assert state.get("DEMO-1") is True and state.get("DEMO-2") is False  # the one being written is not complete

    _run(env, "export", "--source", "demo", *big, *_s3(env))
    assert _inspect(env, *_s3(env)) == {"DEMO-1": True, "DEMO-2": True, "DEMO-3": True}
    reference = _content(LocalFsStorage(tmp_path / "exports/data", tmp_path / "exports/files"))
    resumed = _content(ObjectStoreStorage(f"s3://{env['BUCKET']}/data", f"s3://{env['BUCKET']}/files"))
    assert reference.keys() == resumed.keys() == {"DEMO-1", "DEMO-2", "DEMO-3"}
    for run_id, (table, files) in reference.items():
        assert tables_equal(resumed[run_id][0], table), run_id
        assert resumed[run_id][1] == files, run_id


def test_missing_bucket_and_bad_endpoint_are_one_clear_line(env, migrate):
    missing = migrate("inspect", "--data-path", "s3://no-such-bucket/data", "--files-path", "s3://no-such-bucket/f")
    assert missing.code != 0
    lines = [line for line in (missing.out + missing.err).splitlines() if "no-such-bucket" in line]
    assert lines and "bucket 'no-such-bucket' does not exist" in lines[0], missing.out + missing.err

    env = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens on the discard port
    done = _run(env, "export", "--source", "demo", *DEMO, *_s3(env), ok=False)
    assert done.returncode != 0
    text = (done.stdout + done.stderr).strip()
    assert "cannot reach the object store" in text and "AWS_ENDPOINT_URL" in text, text
    assert "Traceback" not in text


def test_a_remote_state_path_is_refused(env, migrate):
    result = migrate("inspect", *_s3(env), "--set", f"storage.local_fs.state_path=s3://{env['BUCKET']}/state")
    assert result.code != 0
    assert "must be a local directory" in result.out + result.err


def test_a_file_url_is_the_local_disk(migrate, tmp_path):
    url = (tmp_path / "exp").as_uri()  # file:///...
    result = migrate("export", "--source", "demo", *DEMO, "--data-path", f"{url}/data", "--files-path", f"{url}/files")
    assert result.code == 0, result.err
    assert (tmp_path / "exp/data" / S("demo/project") / f"{S('DEMO-1')}_part_0.parquet").is_file()
    inspected = migrate("inspect", "--data-path", str(tmp_path / "exp/data"), "--json")
    assert [r["complete"] for r in json.loads(inspected.out)] == [True, True, True]


def test_doctor_checks_the_bucket(env, migrate):
    good = migrate("doctor", "--storage", "local_fs", *_s3(env))
    assert "reachable" in good.out, good.out + good.err
    bad = migrate("doctor", "--storage", "local_fs", "--data-path", "s3://no-such-bucket/d", "--files-path",
                  "s3://no-such-bucket/f")
    assert bad.code == 1 and "does not" in bad.out, bad.out + bad.err


def test_a_neptune_exporter_dump_uploaded_to_a_bucket_reads_as_on_disk(env, tmp_path):
    from tests.plugins.local_fs import exporter_dump

    expected = exporter_dump.build(tmp_path / "dump")
    fs = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key="x", secret_key="x",
                           region="us-east-1")
    pafs.copy_files(str(tmp_path / "dump"), f"{env['BUCKET']}/dump", destination_filesystem=fs)
    storage = ObjectStoreStorage(f"s3://{env['BUCKET']}/dump/data", f"s3://{env['BUCKET']}/dump/files")
    local = LocalFsStorage(expected["data"], expected["files"])
    runs = {r.run_id: r for r in storage.list_runs()}
    assert set(runs) == set(expected["runs"]) | set(expected["incomplete"])
    on_disk = {r.run_id: r for r in local.list_runs()}
    for run_id, rows in expected["runs"].items():
        run = runs[run_id]
        assert run.complete and not run.has_manifest and run.project_id == exporter_dump.PROJECT
        assert tables_equal(pa.Table.from_batches(list(storage.read(run))),
                            pa.Table.from_batches(list(local.read(on_disk[run_id])))) and rows
    assert not runs["SAN-2"].complete and "interrupted" in runs["SAN-2"].problem
    assert runs["SAN-2"].run_id == on_disk["SAN-2"].run_id  # ids from the parquet columns, through S3
    assert storage.lineage(runs["run-a"]) == {"parent_run_id": "run-root", "fork_step": 2.0}
    for path, content in expected["file_bytes"].items():
        owner = runs["run-a"] if path.startswith("run-a") else runs["SAN-1"]
        with storage.open_file(owner, path) as handle:
            assert handle.read() == content
    listed = dict(storage.iter_files(runs["SAN-1"], "my-org/my-project/SAN-1/source_code/files"))
    assert sorted(listed) == ["my-org/my-project/SAN-1/source_code/files/README.md",
                              "my-org/my-project/SAN-1/source_code/files/src/train.py"]
