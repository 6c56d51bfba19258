"""Drive the unmodified neptune 1.x client against the fake Neptune 2.x backend and check what it reads."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import neptune
import numpy as np
import pytest
import requests
from bravado.exception import HTTPBadRequest, HTTPInternalServerError
from neptune.common.exceptions import (
    ClientHttpError,
    NeptuneConnectionLostException,
    NeptuneInvalidApiTokenException,
    Unauthorized,
)
from neptune.exceptions import (
    FetchAttributeNotFoundException,
    MetadataContainerNotFound,
    NeptuneInvalidQueryException,
    ProjectNotFoundWithSuggestions,
)

from tests.fakes.neptune2 import (
    TOKEN_VERSION_MESSAGE,
    ArtifactFile,
    FakeNeptune2Server,
    File,
    FileSeriesItem,
    GitRef,
    Raw,
    fixtures,
)
from tests.fakes.neptune2.nql import NQLSyntaxError, compile_query

pytestmark = pytest.mark.timeout(60)
fake_neptune2 = fixtures.fake_neptune2  # make the shared fixture visible in this module

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _ro_run(sys_id: str, project: str = "ws/proj") -> neptune.Run:
    return neptune.init_run(with_id=sys_id, project=project, mode="read-only")


@pytest.fixture
def populated(fake_neptune2: FakeNeptune2Server) -> FakeNeptune2Server:
    srv = fake_neptune2
    srv.add_project("ws/proj")
    srv.add_run(
        "ws/proj",
        attrs={
            "params/lr": 0.1,
            "params/epochs": 10,
            "params/use_bn": True,
            "params/optimizer": "adam",
            "params/started": datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC),
            "params/classes": {"cat", "dog"},
            "source_code/git": GitRef(commit_id="abc123"),
        },
        tags=["baseline"],
        float_series={"train/loss": ([0, 2, 5], [0.9, 0.5, 0.2], [T0, T0 + 1000, T0 + 2000])},
        string_series={"logs/stdout": (None, ["hello", "x" * 5000], [T0, T0 + 1])},
        files={"model/ckpt": File(b"\x00weights\x01", name="ckpt", ext="pt")},
        file_series={"images/preds": [FileSeriesItem(b"png-a", step=10, timestamp_ms=T0), (b"png-b", 20)]},
        file_sets={"source_code/files": {"main.py": b"print(1)\n", "pkg/util.py": b"X = 1\n"}},
        artifacts={
            "datasets/train": [ArtifactFile("data/train.csv", file_hash="h1", size=42, metadata={"a": "1"})]
        },
    )
    srv.add_run("ws/proj", attrs={"params/lr": 0.01, "params/optimizer": "sgd"}, tags=["tuned", "baseline"])
    srv.add_run("ws/proj", attrs={"params/lr": 0.5}, trashed=True)
    return srv


# ------------------------------------------------------------------------------------------ runs table


def test_runs_table_respects_trash_queries_and_columns(populated: FakeNeptune2Server) -> None:
    project = neptune.init_project(project="ws/proj", mode="read-only")

    df = project.fetch_runs_table(progress_bar=False).to_pandas()
    assert sorted(df["sys/id"]) == ["PROJ-1", "PROJ-2"]
    row = df.set_index("sys/id").loc["PROJ-1"]
    assert row["params/lr"] == 0.1 and row["params/optimizer"] == "adam"
    assert row["train/loss"] == 0.2 and row["source_code/git"] == "abc123"
    assert row["sys/creation_time"] == datetime(2024, 1, 1, 0, 0, 2)  # table datetimes are naive UTC

    all_runs = project.fetch_runs_table(trashed=None, progress_bar=False).to_pandas()
    assert sorted(all_runs["sys/id"]) == ["PROJ-1", "PROJ-2", "PROJ-3"]
    trashed = project.fetch_runs_table(trashed=True, progress_bar=False).to_pandas()
    assert list(trashed["sys/id"]) == ["PROJ-3"]

    by_query = project.fetch_runs_table(query="`params/lr`:float < 0.05", progress_bar=False).to_pandas()
    assert list(by_query["sys/id"]) == ["PROJ-2"]
    by_regex = project.fetch_runs_table(
        query='`sys/id`:string MATCHES "-[13]$"', trashed=None, progress_bar=False
    ).to_pandas()
    assert sorted(by_regex["sys/id"]) == ["PROJ-1", "PROJ-3"]
    by_tag = project.fetch_runs_table(tag=["baseline", "tuned"], progress_bar=False).to_pandas()
    assert list(by_tag["sys/id"]) == ["PROJ-2"]
    by_id = project.fetch_runs_table(id=["PROJ-1", "PROJ-3"], trashed=None, progress_bar=False).to_pandas()
    assert sorted(by_id["sys/id"]) == ["PROJ-1", "PROJ-3"]
    inactive = project.fetch_runs_table(state="inactive", progress_bar=False).to_pandas()
    assert len(inactive) == 2

    narrow = project.fetch_runs_table(columns=["params/lr"], ascending=True, progress_bar=False).to_pandas()
    assert list(narrow.columns) == ["sys/creation_time", "sys/id", "params/lr"]
    assert list(narrow["sys/id"]) == ["PROJ-1", "PROJ-2"]

    with pytest.raises(NeptuneInvalidQueryException):
        project.fetch_runs_table(query="`params/lr`:float <", progress_bar=False).to_pandas()


def test_search_request_shape(populated: FakeNeptune2Server) -> None:
    """The client sends the project uuid, asks for the sort column's type, then pages from limit=0."""
    srv = populated
    project = neptune.init_project(project="ws/proj", mode="read-only")
    srv.reset_counters()
    project.fetch_runs_table(columns=["sys/id"], progress_bar=False).to_pandas()
    ops = [r.op for r in srv.requests]
    assert ops[0] == "searchLeaderboardAttributes"  # called even for sys/creation_time (client bug)
    assert ops.count("searchLeaderboardEntries") == 3  # count, one page, one empty page
    uuid = srv.project("ws/proj").id
    assert all(r.query["projectIdentifier"] == [uuid] for r in srv.requests)


# ------------------------------------------------------------------------------------------ run atoms


def test_read_only_run_atoms(populated: FakeNeptune2Server) -> None:
    srv = populated
    srv.reset_counters()
    run = _ro_run("PROJ-1")
    assert srv.count("getProject") == 1 and srv.count("getExperiment") == 1
    assert srv.count("getExperimentAttributes") == 1
    assert [r.op for r in srv.requests if r.op.startswith("ping")] == []

    assert run["params/lr"].fetch() == 0.1
    assert run["params/epochs"].fetch() == 10
    assert run["params/use_bn"].fetch() is True
    assert run["params/optimizer"].fetch() == "adam"
    started = run["params/started"].fetch()
    assert started == datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC) and started.tzinfo is not None
    assert run["params/classes"].fetch() == {"cat", "dog"}
    assert run["sys/tags"].fetch() == {"baseline"}
    assert run["sys/id"].fetch() == "PROJ-1"
    assert run["train/loss"].fetch_last() == 0.2

    everything = run.fetch()
    assert everything["params"]["lr"] == 0.1 and everything["sys"]["state"] == "idle"

    with pytest.raises(FetchAttributeNotFoundException):
        run["sys/group_tags"].fetch()  # listed in the structure, 404 on fetch, as on real servers
    run.stop()


def test_unknown_attribute_types_are_dropped(fake_neptune2: FakeNeptune2Server) -> None:
    fake_neptune2.add_run("ws/proj", attrs={"weird/thing": Raw("complexSeries", {"foo": 1}), "ok": 1.0})
    run = _ro_run("PROJ-1")
    assert run.exists("ok") and not run.exists("weird/thing")
    run.stop()


def test_missing_run_and_project(fake_neptune2: FakeNeptune2Server) -> None:
    fake_neptune2.add_project("ws/proj")
    with pytest.raises(MetadataContainerNotFound):
        _ro_run("PROJ-404")
    with pytest.raises(ProjectNotFoundWithSuggestions):
        neptune.init_project(project="ws/nope", mode="read-only")
    assert fake_neptune2.count("listOrganizations") == 1 and fake_neptune2.count("listProjects") == 1


# ------------------------------------------------------------------------------------------ series


def test_float_series_paging_and_timestamps(fake_neptune2: FakeNeptune2Server) -> None:
    n = 2500
    steps = np.arange(n) * 2.0
    values = np.sin(np.arange(n))
    stamps = T0 + np.arange(n, dtype=np.int64) * 10
    fake_neptune2.add_run("ws/proj", float_series={"m": (steps, values, stamps)})
    run = _ro_run("PROJ-1")
    fake_neptune2.reset_counters()
    df = run["m"].fetch_values(progress_bar=False)
    calls = [r for r in fake_neptune2.requests if r.op == "getFloatSeriesValues"]
    assert [(c.query["offset"], c.query["limit"]) for c in calls] == [
        (["0"], ["1000"]),
        (["1000"], ["1000"]),
        (["2000"], ["1000"]),
    ]
    np.testing.assert_array_equal(df["step"].to_numpy(), steps)
    np.testing.assert_allclose(df["value"].to_numpy(), values)
    # the client builds naive *local* datetimes; the fixture pins TZ=UTC so they read as UTC
    assert df["timestamp"][0] == datetime(2023, 11, 14, 22, 13, 20)
    assert df["timestamp"][n - 1] == datetime.fromtimestamp((T0 + (n - 1) * 10) / 1000, UTC).replace(
        tzinfo=None
    )
    run.stop()


def test_string_series(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    df = run["logs/stdout"].fetch_values(progress_bar=False)
    assert list(df["value"]) == ["hello", "x" * 5000]
    assert list(df["step"]) == [0.0, 1.0]
    assert run["logs/stdout"].fetch_last() == "x" * 5000
    run.stop()


# ------------------------------------------------------------------------------------------ files


def test_file_download(populated: FakeNeptune2Server, tmp_path: Path) -> None:
    run = _ro_run("PROJ-1")
    target = tmp_path / "exact.bin"
    run["model/ckpt"].download(str(target))
    assert target.read_bytes() == b"\x00weights\x01"
    run["model/ckpt"].download(str(tmp_path))  # a directory: the name comes from Content-Disposition
    assert (tmp_path / "ckpt.pt").read_bytes() == b"\x00weights\x01"
    download = next(r for r in populated.requests if r.op == "downloadAttribute")
    assert download.headers["Accept"] == "application/octet-stream"
    assert download.headers["Authorization"].startswith("Bearer ")
    assert "X-Neptune-LegacyClient" not in download.headers  # raw downloads skip the default headers
    assert run["model/ckpt"].fetch_extension() == "pt"
    run.stop()


def test_file_series_download_and_channel_api(populated: FakeNeptune2Server, tmp_path: Path) -> None:
    srv = populated
    run = _ro_run("PROJ-1")
    srv.reset_counters()
    run["images/preds"].download(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["0.png", "1.png"]
    assert (tmp_path / "1.png").read_bytes() == b"png-b"
    assert srv.count("getImageSeriesValues") == 1 and srv.count("getImageSeriesValue") == 2

    # the real steps are only available through the channel API, reachable with the client's bravado client
    attrs = (
        run._backend.leaderboard_client.api.getExperimentAttributes(experimentId=run._id).response().result
    )
    props = next(a for a in attrs.attributes if a.name == "images/preds").imageSeriesProperties
    assert props.lastStep == 20.0
    channel = (
        run._backend.leaderboard_client.api.getChannelValues(channelId=props.channelId, limit=10, offset=0)
        .response()
        .result
    )
    assert channel.totalItemCount == 2
    assert [p.x for p in channel.values] == [10.0, 20.0]
    assert channel.values[0].timestampMillis == T0
    srv.channel_api_enabled = False
    with pytest.raises(Exception, match="404"):
        run._backend.leaderboard_client.api.getChannelValues(channelId=props.channelId).response()
    run.stop()


def test_file_set_zip(populated: FakeNeptune2Server, tmp_path: Path) -> None:
    srv = populated
    run = _ro_run("PROJ-1")
    srv.file_set_prepare_polls = 1  # one "not ready" answer: the client sleeps 0.5 s and polls again
    target = tmp_path / "files.zip"
    run["source_code/files"].download(str(target))
    assert srv.count("getDownloadPrepareRequest") == 2 and srv.count("downloadFileSetZip") == 1
    assert (
        next(r for r in srv.requests if r.op == "downloadFileSetZip").headers["Accept"] == "application/zip"
    )
    with zipfile.ZipFile(target) as zf:
        assert sorted(zf.namelist()) == ["main.py", "pkg/util.py"]
        assert zf.read("pkg/util.py") == b"X = 1\n"
    listing = {e.name: e.file_type for e in run["source_code/files"].list_fileset_files()}
    assert listing == {"main.py": "file", "pkg": "directory"}
    run.stop()


def test_artifact_file_list(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    files = run["datasets/train"].fetch_files_list()
    assert len(files) == 1
    f = files[0]
    assert (f.file_path, f.file_hash, f.type, f.size, f.metadata) == (
        "data/train.csv",
        "h1",
        "S3",
        42,
        {"a": "1"},
    )
    listing = next(r for r in populated.requests if r.op == "listArtifactFiles")
    assert listing.headers["X-Neptune-Artifact-Api-Version"] == "2"
    assert listing.query["projectIdentifier"] == [populated.project("ws/proj").id]
    assert (
        run["datasets/train"].fetch_hash()
        == populated.container("ws/proj", "PROJ-1").attrs["datasets/train"].hash
    )
    run.stop()


# ------------------------------------------------------------------------------------------ models


def test_models_and_model_versions(fake_neptune2: FakeNeptune2Server) -> None:
    srv = fake_neptune2
    srv.add_project("ws/proj")
    model = srv.add_model("ws/proj", "CLS", attrs={"info/size": 3})
    other = srv.add_model("ws/proj", "DET")
    srv.add_model_version(model, attrs={"val/acc": 0.9}, stage="production")
    srv.add_model_version("PROJ-CLS", project="ws/proj", attrs={"val/acc": 0.95})
    srv.add_model_version(other)
    srv.add_run("ws/proj")

    project = neptune.init_project(project="ws/proj", mode="read-only")
    models = project.fetch_models_table(progress_bar=False).to_pandas()
    assert sorted(models["sys/id"]) == ["PROJ-CLS", "PROJ-DET"]

    m = neptune.init_model(with_id="PROJ-CLS", project="ws/proj", mode="read-only")
    assert m["info/size"].fetch() == 3
    versions = m.fetch_model_versions_table(progress_bar=False).to_pandas()
    assert sorted(versions["sys/id"]) == ["PROJ-CLS-1", "PROJ-CLS-2"]
    assert set(versions["sys/model_id"]) == {"PROJ-CLS"}

    mv = neptune.init_model_version(with_id="PROJ-CLS-1", project="ws/proj", mode="read-only")
    assert mv["sys/stage"].fetch() == "production"
    assert mv["val/acc"].fetch() == 0.9
    with pytest.raises(MetadataContainerNotFound):
        neptune.init_model(with_id="PROJ-1", project="ws/proj", mode="read-only")  # a run, not a model
    for container in (m, mv, project):
        container.stop()


# ------------------------------------------------------------------------------------------ projects


def test_project_listing(fake_neptune2: FakeNeptune2Server) -> None:
    from neptune import management
    from neptune.internal.backends.hosted_client import create_backend_client, create_http_client_with_auth
    from neptune.internal.credentials import Credentials

    srv = fake_neptune2
    for i in range(5):
        srv.add_project(f"ws/p{i}")
    srv.add_project("other/x")
    assert sorted(management.get_project_list()) == ["other/x", "ws/p0", "ws/p1", "ws/p2", "ws/p3", "ws/p4"]

    # workspace discovery as the exporter does it: organizationIdentifier + offset/limit until matchingItemCount
    http_client, config = create_http_client_with_auth(Credentials.from_token(), True, {})
    api = create_backend_client(config, http_client).api
    names, offset = [], 0
    while True:
        page = api.listProjects(organizationIdentifier="ws", offset=offset, limit=2).response().result
        names += [p.name for p in page.entries]
        offset += 2
        if offset >= page.matchingItemCount:
            break
    assert names == ["p0", "p1", "p2", "p3", "p4"]


# ------------------------------------------------------------------------------------------ 10k window


def test_leaderboard_paging_past_the_offset_cap(
    fake_neptune2: FakeNeptune2Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = fake_neptune2
    srv.add_project("ws/big")
    for i in range(12_000):
        srv.add_run("ws/big", attrs={"i": i})
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "1000")
    project = neptune.init_project(project="ws/big", mode="read-only")
    srv.reset_counters()
    df = project.fetch_runs_table(columns=["i"], ascending=True, progress_bar=False).to_pandas()
    assert len(df) == 12_000 and df["sys/id"].nunique() == 12_000
    assert list(df["i"][:3]) == [0, 1, 2] and df["i"].iloc[-1] == 11_999
    bodies = [r for r in srv.requests if r.op == "searchLeaderboardEntries"]
    assert len(bodies) == 1 + 10 + 3  # count, 10 pages to the cap, restart with `>`: 2 pages + empty one


def test_ties_at_the_offset_cap_are_skipped_by_the_client(
    fake_neptune2: FakeNeptune2Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs sharing ``sys/creation_time`` across the 10k boundary vanish: the client restarts with a strict `>`."""
    srv = fake_neptune2
    srv.add_project("ws/big")
    for i in range(10_050):
        created = T0 + (i if i < 9_990 else 9_990) * 1000  # runs 9990..10049 share one timestamp
        srv.add_run("ws/big", creation_time=created)
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "1000")
    project = neptune.init_project(project="ws/big", mode="read-only")
    df = project.fetch_runs_table(columns=["sys/id"], ascending=True, progress_bar=False).to_pandas()
    assert len(df) == 10_000  # 50 runs lost, exactly as against a real server


def test_descending_past_the_window_repeats_newest_runs(
    fake_neptune2: FakeNeptune2Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Client quirk, shown on a shrunken window (50 instead of 10 000): after the cap the client restarts with
    `sys/creation_time > last`, which in descending order re-lists the newest runs and never reaches older ones."""
    from neptune.api import searching_entries

    monkeypatch.setitem(searching_entries.iter_over_pages.__kwdefaults__, "max_offset", 50)
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "10")
    srv = fake_neptune2
    srv.max_offset = 50
    for _ in range(120):
        srv.add_run("ws/p")
    project = neptune.init_project(project="ws/p", mode="read-only")
    asc = project.fetch_runs_table(columns=["sys/id"], ascending=True, progress_bar=False).to_pandas()
    assert len(asc) == 120 and asc["sys/id"].nunique() == 120
    desc = project.fetch_runs_table(columns=["sys/id"], ascending=False, progress_bar=False).to_pandas()
    assert desc["sys/id"].nunique() == 50 and len(desc) == 495  # 50 + 49 + ... + 40, then an empty page
    assert set(desc["sys/id"]) == {f"P-{i}" for i in range(71, 121)}


def test_server_rejects_offsets_beyond_the_window(populated: FakeNeptune2Server) -> None:
    srv = populated
    project = neptune.init_project(project="ws/proj", mode="read-only")
    client = project._backend.leaderboard_client
    op = client.api.searchLeaderboardEntries
    ok = op(projectIdentifier=project._project_id, params={"pagination": {"offset": 9_900, "limit": 100}})
    assert ok.response().incoming_response.json()["matchingItemCount"] == 3
    with pytest.raises(HTTPBadRequest) as err:
        op(projectIdentifier=project._project_id, params={"pagination": {"offset": 9_950, "limit": 100}})
    assert "must not exceed 10000" in err.value.swagger_result.message
    assert srv.requests[-1].status == 400


# ------------------------------------------------------------------------------------------ faults


def test_fault_5xx_is_retried(populated: FakeNeptune2Server) -> None:
    srv = populated
    run = _ro_run("PROJ-1")
    srv.faults.add(r"/attributes/series/float$", "5xx", times=1, status=503)
    srv.reset_counters()
    df = run["train/loss"].fetch_values(progress_bar=False)
    assert list(df["value"]) == [0.9, 0.5, 0.2]
    assert srv.count("getFloatSeriesValues") == 2
    assert [r.status for r in srv.requests] == [503, 200]
    run.stop()


def test_fault_5xx_forever_gives_up_after_retry_budget(
    populated: FakeNeptune2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neptune.common.backends.utils as retry_utils

    run = _ro_run("PROJ-1")
    monkeypatch.setattr(retry_utils, "retries_timeout", 2)
    populated.faults.add("getFloatAttribute", "5xx", times=None)
    start = time.monotonic()
    with pytest.raises(NeptuneConnectionLostException):
        run["params/lr"].fetch()
    assert time.monotonic() - start < 10
    run.stop()


def test_fault_on_entries_search_is_not_retried(populated: FakeNeptune2Server) -> None:
    """Table pages are fetched lazily, outside the client's retry decorator: a 500 surfaces directly."""
    project = neptune.init_project(project="ws/proj", mode="read-only")
    populated.faults.add("searchLeaderboardEntries", "5xx", times=1)
    with pytest.raises(HTTPInternalServerError):
        project.fetch_runs_table(progress_bar=False).to_pandas()


def test_fault_429_uses_first_digit_of_retry_after(populated: FakeNeptune2Server) -> None:
    srv = populated
    run = _ro_run("PROJ-1")
    srv.faults.add("getFloatAttribute", "429", times=1, retry_after="10")
    start = time.monotonic()
    assert run["params/lr"].fetch() == 0.1
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 5.0  # "10" -> int("1") -> one second, not ten
    assert srv.count("getFloatAttribute") == 2
    run.stop()


def test_fault_401_on_api_call(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    populated.faults.add("getStringAttribute", "401")
    with pytest.raises(Unauthorized):
        run["params/optimizer"].fetch()
    run.stop()


def test_fault_401_on_token_exchange(populated: FakeNeptune2Server) -> None:
    fresh = populated.make_api_token()  # a new token: the client caches clients per token
    populated.faults.add("exchangeApiToken", "401")
    with pytest.raises(NeptuneInvalidApiTokenException):
        neptune.init_project(project="ws/proj", mode="read-only", api_token=fresh)


def test_unknown_api_key_is_rejected(populated: FakeNeptune2Server) -> None:
    payload = {"api_address": populated.base_url, "api_url": populated.base_url, "api_key": "revoked"}
    bogus = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(NeptuneInvalidApiTokenException):
        neptune.init_project(project="ws/proj", mode="read-only", api_token=bogus)


def test_fault_token_version_400(populated: FakeNeptune2Server) -> None:
    fresh = populated.make_api_token()
    populated.faults.add("getClientConfig", "token_version")
    with pytest.raises(ClientHttpError) as err:
        neptune.init_project(project="ws/proj", mode="read-only", api_token=fresh)
    assert err.value.status == 400 and TOKEN_VERSION_MESSAGE in err.value.response
    # the same answer comes without an injected fault when the header is missing altogether
    raw = requests.get(populated.base_url + "/api/backend/v1/clients/config", timeout=5)
    assert raw.status_code == 400 and raw.json()["message"] == TOKEN_VERSION_MESSAGE


def test_fault_token_expired_is_retried(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    populated.faults.add("getFloatAttribute", "token_expired")
    assert run["params/lr"].fetch() == 0.1
    assert populated.count("getFloatAttribute") == 2
    run.stop()


def test_fault_slow_response(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    populated.faults.add("getFloatAttribute", "slow", delay=0.4)
    start = time.monotonic()
    assert run["params/lr"].fetch() == 0.1
    assert time.monotonic() - start >= 0.4
    assert populated.count("getFloatAttribute") == 1
    run.stop()


def test_fault_dropped_connection_is_retried(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    populated.faults.add("getIntAttribute", "drop")
    assert run["params/epochs"].fetch() == 10
    assert populated.count("getIntAttribute") == 2
    run.stop()


def test_fault_404_and_faults_by_path(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    fault = populated.faults.add(r"/api/leaderboard/v1/attributes/float$", "404", times=2)
    for _ in range(2):
        with pytest.raises(FetchAttributeNotFoundException):
            run["params/lr"].fetch()
    assert fault.hits == 2 and fault.exhausted
    assert run["params/lr"].fetch() == 0.1
    run.stop()


def test_client_version_check_from_config(populated: FakeNeptune2Server) -> None:
    from neptune.exceptions import NeptuneClientUpgradeRequiredError

    populated.config_overrides = {"pyLibVersions": {"maxCompatibleVersion": "1.0.0"}}
    with pytest.raises(NeptuneClientUpgradeRequiredError):
        neptune.init_project(project="ws/proj", mode="read-only", api_token=populated.make_api_token())


def test_latency_and_string_truncation_knobs(populated: FakeNeptune2Server) -> None:
    run = _ro_run("PROJ-1")
    populated.string_series_max_value_length = 1000
    populated.latency = 0.05
    start = time.monotonic()
    df = run["logs/stdout"].fetch_values(progress_bar=False)
    assert time.monotonic() - start >= 0.05
    assert list(df["value"]) == ["hello", "x" * 1000]
    run.stop()


def test_short_lived_access_tokens_are_refreshed(fake_neptune2: FakeNeptune2Server) -> None:
    """With less than 30 s left on the JWT the client refreshes through the Keycloak-style endpoint first."""
    srv = fake_neptune2
    srv.access_token_ttl = 20
    srv.add_run("ws/proj", attrs={"a": 1.5})
    run = _ro_run("PROJ-1")
    before = srv.count("oauthRefresh")
    assert run["a"].fetch() == 1.5
    assert srv.count("oauthRefresh") == before + 1
    refresh = next(r for r in srv.requests if r.op == "oauthRefresh")
    assert refresh.method == "POST"


def test_bearer_token_is_required(populated: FakeNeptune2Server) -> None:
    raw = requests.get(
        populated.base_url + "/api/backend/v1/projects/get?projectIdentifier=ws/proj", timeout=5
    )
    assert raw.status_code == 401


# ------------------------------------------------------------------------------------------ env for subprocesses


def test_client_env_works_in_a_subprocess(populated: FakeNeptune2Server) -> None:
    code = (
        "import neptune, json\n"
        "p = neptune.init_project(project='ws/proj', mode='read-only')\n"
        "df = p.fetch_runs_table(progress_bar=False).to_pandas()\n"
        "print('IDS=' + json.dumps(sorted(df['sys/id'])))\n"
        "p.stop()\n"
    )
    env = {**os.environ, **populated.client_env()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("IDS="))
    assert json.loads(line[4:]) == ["PROJ-1", "PROJ-2"]


# ------------------------------------------------------------------------------------------ NQL unit tests


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", True),
        ("(`sys/trashed`:bool = false)", True),
        ("`sys/trashed`:bool = true", False),
        ("`lr`:float > 0.05 AND `lr`:float <= 0.1", True),
        ('(`name`:string = "a b") OR (`lr`:float > 1)', True),
        ('NOT (`name`:string = "a b")', False),
        ('`tags`:stringSet CONTAINS "x"', True),
        ('`tags`:stringSet CONTAINS "z"', False),
        ('`name`:string MATCHES "^a\\\\s"', True),
        ('`name`:string CONTAINS " b"', True),
        ('`created`:datetime > "2024-01-01T00:00:00.000Z"', True),
        ('`created`:datetime > "2024-06-01T00:00:00Z"', False),
        ("`missing`:float > 1", False),
        ('`missing`:string != "x"', True),
        ("lr: float > 0.01 AND name: string = x", False),
        ('`state`:experimentState = "idle"', True),
        ("`lr` EXISTS", True),
    ],
)
def test_nql_subset(query: str, expected: bool) -> None:
    from tests.fakes.neptune2 import RunState

    attrs = {
        "sys/trashed": False,
        "lr": 0.1,
        "name": "a b",
        "tags": {"x", "y"},
        "created": datetime(2024, 2, 1, tzinfo=UTC),
        "state": RunState("idle"),
    }
    assert compile_query(query)(attrs) is expected


@pytest.mark.parametrize("query", ["`a`:float >", "(`a` = 1", "`a` ~ 1", "AND `a` = 1"])
def test_nql_syntax_errors(query: str) -> None:
    with pytest.raises(NQLSyntaxError):
        compile_query(query)


def test_standalone_server_with_env_context_manager() -> None:
    from tests.fakes.neptune2.fixtures import neptune2_client_env

    before = os.environ.get("NEPTUNE_API_TOKEN")
    with FakeNeptune2Server() as srv, neptune2_client_env(srv):
        token = json.loads(base64.b64decode(srv.api_token))
        assert token["api_address"] == token["api_url"] == srv.base_url
        assert srv.base_url.startswith("http://127.0.0.1:")
        spec = requests.get(srv.base_url + "/api/leaderboard/swagger.json", timeout=5).json()
        assert spec["swagger"] == "2.0"
        srv.add_run("ws/solo", attrs={"a": 1})
        run = _ro_run("SOLO-1", project="ws/solo")
        assert run["a"].fetch() == 1
        run.stop()
    assert os.environ.get("NEPTUNE_API_TOKEN") == before
