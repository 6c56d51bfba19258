"""End-to-end tests of the fake Neptune 3.x backend with the real, unmodified clients.

Golden data is written with neptune-scale (the real Neptune 3 writer) and read back with neptune-query;
paging and fault tests use the data builder, which is much faster than going through the writer.
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.fakes.neptune3 import FakeNeptune3, fixtures
from tests.fakes.neptune3 import golden as golden_data
from tests.fakes.neptune3.fixtures import running_fake_neptune3
from tests.fakes.neptune3.golden import LOSS_STEPS, T0, loss
from tests.fakes.neptune3.proto import encode_float_points, series_values_pb2
from tests.fakes.neptune3.store import Series, SeriesRejected

nq = pytest.importorskip("neptune_query")
import neptune_query.runs as nq_runs  # noqa: E402
from neptune_query import exceptions as nq_exc  # noqa: E402
from neptune_query.filters import Attribute, AttributeFilter, Filter  # noqa: E402

fake_neptune3 = fixtures.fake_neptune3  # a fixture is found by its name in the test module
fake_neptune3_golden = fixtures.fake_neptune3_golden


@pytest.fixture(scope="module")
def golden() -> Iterator[FakeNeptune3]:
    """One fake per module holding the neptune-scale-written golden runs."""
    pytest.importorskip("neptune_scale")
    with running_fake_neptune3(project="golden-ws/golden-proj") as fake:
        # the writer must ride out transient errors on ingest and on blob upload
        fake.faults.add(r"^/api/client/v1/ingest$", "5xx", times=1)
        fake.faults.add(r"^/_fake_storage/", "5xx", times=1, method="PUT", status=500)
        golden_data.write_golden_data()
        rejected = [(run, msg.split(":")[0]) for _, run, msg in fake.store.rejected]
        assert rejected == golden_data.EXPECTED_REJECTED
        assert fake.server_errors == []
        yield fake
        assert fake.server_errors == []


def test_shared_golden_fixture(fake_neptune3_golden: FakeNeptune3) -> None:
    """The fixture other test modules use: same data, written without injected faults."""
    assert tuple(sorted(nq_runs.list_runs())) == golden_data.RUN_IDS
    rejected = [(run, msg.split(":")[0]) for _, run, msg in fake_neptune3_golden.store.rejected]
    assert rejected == golden_data.EXPECTED_REJECTED
    assert fake_neptune3_golden.server_errors == []


# -- golden data, written by neptune-scale ---------------------------------------------------------------
def test_writer_bootstrap_and_ingest_paths(golden: FakeNeptune3) -> None:
    assert golden.count(r"^/api/backend/v1/clients/config$") >= 1
    assert golden.count(r"openid-configuration$") >= 1
    assert golden.count(r"^/api/client/v1/ingest$", "POST") >= 4
    assert golden.count(r"^/api/client/v1/ingest/check$") >= 1
    assert golden.count(r"^/_fake_storage/", "PUT") == 5  # one upload was answered 500 and retried
    assert len(golden.store.blobs) == 4
    assert all(fault.hits == 1 for fault in golden.faults.rules)


def test_list_runs_and_experiments(golden: FakeNeptune3) -> None:
    assert set(nq_runs.list_runs()) == {"golden-a", "golden-b", "golden-fork", "golden-fork2"}
    assert set(nq_runs.list_runs(runs="^golden-fork")) == {"golden-fork", "golden-fork2"}
    assert sorted(nq.list_experiments()) == ["exp-golden", "exp-other"]
    assert nq.list_experiments(experiments="golden$") == ["exp-golden"]


def test_list_attributes(golden: FakeNeptune3) -> None:
    attrs = set(nq_runs.list_attributes(runs=["golden-a"]))
    assert {"cfg/lr", "metrics/loss", "logs/text", "hist/w", "files/model", "files/series", "sys/id"} <= attrs
    assert set(
        nq_runs.list_attributes(runs=["golden-a"], attributes=AttributeFilter(type="float_series"))
    ) == {
        "metrics/loss",
        "metrics/acc",
    }


def test_configs_of_every_type(golden: FakeNeptune3) -> None:
    df = nq_runs.fetch_runs_table(runs=["golden-a"], attributes=r"^cfg/", type_suffix_in_column_names=True)
    row = df.loc["golden-a"]
    assert row["cfg/lr:float"] == pytest.approx(0.001)
    assert row["cfg/batch:int"] == 64
    assert row["cfg/optimizer:string"] == "adam"
    assert bool(row["cfg/use_amp:bool"]) is True
    assert row["cfg/started:datetime"] == pd.Timestamp(T0 + timedelta(hours=1))
    assert row["cfg/layers:string_set"] == {"conv", "fc"}


def test_sys_attributes_tags_and_table_projection(golden: FakeNeptune3) -> None:
    names = ["sys/tags", "sys/group_tags", "sys/creation_time", "sys/name", "cfg/lr", "metrics/loss"]
    df = nq_runs.fetch_runs_table(runs=["golden-a", "golden-b"], attributes=names)
    assert df.loc["golden-a", "sys/tags"] == {"golden", "alpha"}
    assert df.loc["golden-a", "sys/group_tags"] == {"group-1"}
    assert df.loc["golden-a", "sys/creation_time"] == pd.Timestamp(T0)
    assert df.loc["golden-b", "sys/name"] == "exp-other"
    assert df.loc["golden-b", "cfg/lr"] == pytest.approx(0.1)
    assert df.loc["golden-a", "metrics/loss"] == pytest.approx(loss(49))  # last non-preview point
    # the table is sorted by sys/creation_time descending by default
    assert list(df.index) == ["golden-b", "golden-a"]
    exp = nq.fetch_experiments_table(
        experiments=["exp-golden"], attributes=["cfg/optimizer", "sys/custom_run_id"]
    )
    assert exp.loc["exp-golden", "cfg/optimizer"] == "adam"
    assert exp.loc["exp-golden", "sys/custom_run_id"] == "golden-a"


def test_metrics_values_decimal_steps_and_timestamps(golden: FakeNeptune3) -> None:
    df = nq_runs.fetch_metrics(
        runs=["golden-a"], attributes="metrics/loss", include_time="absolute", lineage_to_the_root=False
    )
    part = df.loc["golden-a"]
    assert list(part.index) == LOSS_STEPS
    assert np.allclose(part[("metrics/loss", "value")].to_numpy(), [loss(k) for k in range(50)])
    expected_ts = [pd.Timestamp(T0 + timedelta(seconds=k)) for k in range(50)]
    assert list(part[("metrics/loss", "absolute_time")]) == expected_ts
    acc = nq_runs.fetch_metrics(runs=["golden-a"], attributes="metrics/acc", step_range=(2, 4))
    assert list(acc.loc["golden-a"].index) == [2.0, 3.0, 4.0]
    tail = nq_runs.fetch_metrics(
        runs=["golden-a"], attributes="metrics/loss", tail_limit=3, lineage_to_the_root=False
    )
    assert list(tail.loc["golden-a"].index) == LOSS_STEPS[-3:]


def test_steps_colliding_after_rounding(golden: FakeNeptune3) -> None:
    df = nq_runs.fetch_metrics(runs=["golden-b"], attributes="metrics/loss")
    assert list(df.loc["golden-b"].index)[-2:] == [9.0, 10.0]
    assert df.loc[("golden-b", 10.0), "metrics/loss"] == 0.5


def test_metric_previews(golden: FakeNeptune3) -> None:
    df = nq_runs.fetch_metrics(
        runs=["golden-a"], attributes="metrics/loss", include_point_previews=True, lineage_to_the_root=False
    )
    part = df.loc["golden-a"]
    assert list(part.index)[-2:] == [5.0, 5.5]
    assert list(part[("metrics/loss", "is_preview")])[-3:] == [False, True, True]
    assert part[("metrics/loss", "preview_completion")].iloc[-2] == pytest.approx(0.5)
    assert part[("metrics/loss", "preview_completion")].iloc[-1] == pytest.approx(0.8)
    assert part[("metrics/loss", "value")].iloc[-1] == pytest.approx(0.012)


def test_fork_lineage(golden: FakeNeptune3) -> None:
    own = nq_runs.fetch_metrics(runs=["golden-fork2"], attributes="metrics/loss", lineage_to_the_root=False)
    assert list(own.loc["golden-fork2"].index) == [2.6, 2.7]
    full = nq_runs.fetch_metrics(runs=["golden-fork2"], attributes="metrics/loss", lineage_to_the_root=True)
    part = full.loc["golden-fork2"]["metrics/loss"]
    expected_steps = LOSS_STEPS[:21] + [2.1, 2.2, 2.3, 2.4, 2.5] + [2.6, 2.7]  # fork steps are inclusive
    assert list(part.index) == expected_steps
    expected_values = [loss(k) for k in range(21)] + [101.0, 102.0, 103.0, 104.0, 105.0] + [200.0, 201.0]
    assert np.allclose(part.to_numpy(), expected_values)

    table = nq_runs.fetch_runs_table(
        runs=["golden-fork", "golden-fork2"],
        attributes=["sys/forking/depth", "sys/forking/parent", "sys/forking/step", "sys/family", "cfg/lr"],
    )
    assert table.loc["golden-fork2", "sys/forking/depth"] == 2
    assert table.loc["golden-fork2", "sys/forking/parent"] == "golden-fork"
    assert table.loc["golden-fork", "sys/forking/step"] == pytest.approx(2.0)
    assert table.loc["golden-fork2", "sys/forking/step"] == pytest.approx(2.5)
    assert table.loc["golden-fork", "cfg/lr"] == pytest.approx(0.001)  # inherit_configs=True (the default)


def test_string_and_histogram_series(golden: FakeNeptune3) -> None:
    df = nq_runs.fetch_series(
        runs=["golden-a"], attributes=["logs/text", "hist/w", "hist/d"], include_time="absolute"
    )
    part = df.loc["golden-a"]
    assert list(part[("logs/text", "value")].dropna()) == ["first line", "second line", "third ünïcode line"]
    assert part.loc[3.0, ("logs/text", "absolute_time")] == pd.Timestamp(T0 + timedelta(seconds=203))
    w1, w2 = part.loc[1.0, ("hist/w", "value")], part.loc[2.0, ("hist/w", "value")]
    assert (w1.type, w1.edges, w1.values) == ("COUNTING", [0.0, 1.0, 2.0, 3.0], [5.0, 7.0, 1.0])
    assert w2.values == [4.0, 8.0, 2.0]
    d = part.loc[2.0, ("hist/d", "value")]
    assert d.edges == [-1.0, 0.0, 1.0] and d.values == [0.25, 0.75]


def test_download_files_and_file_series(golden: FakeNeptune3, tmp_path: Path) -> None:
    table = nq_runs.fetch_runs_table(runs=["golden-a"], attributes=["files/model", "files/config"])
    assert table.loc["golden-a", "files/config"].mime_type == "application/json"
    out = nq_runs.download_files(files=table, destination=tmp_path / "atoms")
    paths = {col: Path(out[col].dropna().iloc[0]) for col in out.columns}
    contents = {col: p.read_bytes() for col, p in paths.items()}
    assert contents == {"files/model": b"model-bytes-\x00\x01\x02", "files/config": b'{"a": 1}'}
    # neptune-query names the target <destination>/<run>/<attribute path> plus an extension from the mime type
    assert paths["files/config"] == tmp_path / "atoms" / "golden-a" / "files" / "config.json"

    series = nq_runs.fetch_series(runs=["golden-a"], attributes="files/series")
    downloaded = nq_runs.download_files(files=series, destination=tmp_path / "series")
    got = sorted(Path(p).read_bytes() for p in downloaded["files/series"].dropna())
    assert got == [b"series-step-1", b"series-step-2"]


def test_experiment_variants(golden: FakeNeptune3) -> None:
    df = nq.fetch_metrics(experiments=["exp-golden"], attributes="metrics/acc")
    assert list(df.loc["exp-golden"].index) == [float(i) for i in range(10)]
    series = nq.fetch_series(experiments="exp-golden", attributes="logs/text")
    assert len(series.loc["exp-golden"]) == 3


def test_filters_run_through_the_nql_subset(golden: FakeNeptune3) -> None:
    def runs(flt: Filter) -> set[str]:
        return set(nq_runs.list_runs(runs=flt))

    assert runs(Filter.eq("cfg/optimizer", "adam")) == {"golden-a", "golden-fork", "golden-fork2"}
    assert runs(Filter.gt(Attribute("cfg/lr", type="float"), 0.01)) == {"golden-b"}
    assert runs(Filter.contains_all("sys/tags", ["golden", "alpha"])) == {"golden-a"}
    assert runs(Filter.exists("hist/w") & Filter.eq("cfg/use_amp", True)) == {"golden-a"}
    assert runs(~Filter.matches("sys/custom_run_id", "fork")) == {"golden-a", "golden-b"}
    assert runs(Filter.lt("sys/creation_time", T0 + timedelta(seconds=30))) == {"golden-a"}
    assert runs(Filter.gt(Attribute("metrics/loss", type="float_series"), 150)) == {  # last value
        "golden-fork2"
    }


# -- store rules and builder data ------------------------------------------------------------------------------
def test_series_step_rules() -> None:
    series = Series("floatSeries")
    series.append(1.0, 1.0, 0)
    series.append(2.0, 2.0, 0)
    series.append(2.0, 2.0, 0)  # the same point again (a retried request) is a no-op
    with pytest.raises(SeriesRejected) as dup:
        series.append(2.0, 9.0, 0)
    assert dup.value.code == SeriesRejected.POINT_DUPLICATE
    with pytest.raises(SeriesRejected) as back:
        series.append(1.5, 9.0, 0)
    assert back.value.code == SeriesRejected.STEP_NON_INCREASING
    series.append(3.0, 30.0, 0, is_preview=True, ratio=0.3)
    series.append(4.0, 40.0, 0, is_preview=True, ratio=0.4)
    series.append(3.5, 35.0, 0, is_preview=True, ratio=0.5)  # replaces the preview at 4.0
    assert list(series.columns().steps) == [1.0, 2.0, 3.0, 3.5]
    with pytest.raises(SeriesRejected) as early:
        series.append(2.0, 1.0, 0, is_preview=True)
    assert early.value.code == SeriesRejected.PREVIEW_NOT_AFTER_COMMITTED
    series.append(3.2, 32.0, 0)  # a committed point drops the remaining previews
    cols = series.columns()
    assert list(cols.steps) == [1.0, 2.0, 3.2] and not cols.is_preview.any()
    assert series.aggregates()["last"] == 32.0


def test_experiment_name_moves_to_the_newest_holder(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("first", experiment_name="shared", configs={"v": 1})
    fake_neptune3.data.run("second", experiment_name="shared", configs={"v": 2})
    assert nq.list_experiments() == ["shared"]
    table = nq.fetch_experiments_table(experiments=["shared"], attributes=["v", "sys/custom_run_id"])
    assert table.loc["shared", "sys/custom_run_id"] == "second"
    assert set(nq_runs.list_runs()) == {"first", "second"}


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.ExperimentalWarning")
def test_metric_buckets(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("r1", experiment_name="e1").metric("m", np.arange(11.0), np.arange(11.0) ** 2)
    df = nq.fetch_metric_buckets(experiments=["e1"], y="m", limit=5)
    assert [(b.left, b.right) for b in df.index] == [
        (0.0, 2.0),
        (2.0, 4.0),
        (4.0, 6.0),
        (6.0, 8.0),
        (8.0, 10.0),
    ]
    assert list(df[("e1", "m", "x")]) == [0.0, 4.0, 6.0, 8.0, 10.0]  # first point, then each bucket's last
    assert list(df[("e1", "m", "y")]) == [0.0, 16.0, 36.0, 64.0, 100.0]


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.ExperimentalWarning")
def test_global_search_across_projects(fake_neptune3: FakeNeptune3) -> None:
    from neptune_query.experimental import fetch_runs_table_global

    fake_neptune3.data.run("a1", configs={"lr": 0.1})
    fake_neptune3.data.run("b1", project="other-ws/other-proj", configs={"lr": 0.2})
    fake_neptune3.data.run("b2", project="other-ws/other-proj")
    df = fetch_runs_table_global(runs=Filter.exists(Attribute("lr", type="float")), attributes=["lr"])
    assert df["lr"].to_dict() == {(fake_neptune3.project, "a1"): 0.1, ("other-ws/other-proj", "b1"): 0.2}


# -- builder data: paging -------------------------------------------------------------------------------------
@pytest.mark.parametrize("uniform_timestamps", [True, False])
def test_float_encoder_matches_shipped_message_classes(uniform_timestamps: bool) -> None:
    rng = np.random.default_rng(7)
    n = 257
    if uniform_timestamps:  # the fast path: every timestamp varint has the same length
        ts = 1_700_000_000_000 + rng.integers(0, 10**9, n)
    else:
        ts = rng.integers(-5, 2**45, n)
        ts[:3] = [0, 1, 2**62]
    steps = np.sort(rng.random(n)) * 1000
    values = rng.normal(size=n)
    values[0] = math.nan
    previews = rng.random(n) < 0.3
    ratios = rng.random(n).astype(np.float32)
    raw = series_values_pb2.ProtoFloatSeriesValuesDTO(total_item_count=n).SerializeToString()
    raw += encode_float_points(ts, steps, values, previews, ratios)
    parsed = series_values_pb2.ProtoFloatSeriesValuesDTO.FromString(raw)
    expected = series_values_pb2.ProtoFloatSeriesValuesDTO(total_item_count=n)
    for i in range(n):
        expected.values.add(
            timestamp_millis=int(ts[i]),
            step=float(steps[i]),
            value=float(values[i]),
            is_preview=bool(previews[i]),
            completion_ratio=float(ratios[i]),
        )
    assert len(parsed.values) == n
    assert parsed.values[5] == expected.values[5]
    assert [p.timestamp_millis for p in parsed.values] == [int(t) for t in ts]
    assert math.isnan(parsed.values[0].value)
    assert parsed.values[1:] == expected.values[1:]


def test_float_series_pages_with_after_step(fake_neptune3: FakeNeptune3) -> None:
    n = 1_000_500  # the client asks for 1M points per single-series request, so this needs two pages
    steps = np.arange(n, dtype=np.float64) / 4
    fake_neptune3.data.run("big").metric("m", steps, np.sin(steps))
    df = nq_runs.fetch_metrics(runs=["big"], attributes="m", lineage_to_the_root=False)
    assert len(df) == n
    assert np.array_equal(df.index.get_level_values("step").to_numpy(), steps)
    assert np.allclose(df["m"].to_numpy(), np.sin(steps))
    calls = fake_neptune3.requests_to(r"/series/float$")
    assert len(calls) == 2
    assert "afterStep" not in calls[0].body["requests"][0]
    assert calls[1].body["requests"][0]["afterStep"] == steps[n - 1_000_000]


def test_float_series_ascending_order_as_old_clients_ask(fake_neptune3: FakeNeptune3) -> None:
    """neptune-query <= 1.9 pages in ascending order; exercise it on the wire."""
    fake_neptune3.data.run("asc").metric("m", np.arange(10.0), np.arange(10.0) * 2)
    client = httpx.Client(base_url=fake_neptune3.base_url)
    token = client.get(
        "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": fake_neptune3.api_token}
    ).json()["accessToken"]
    body = {
        "perSeriesPointsLimit": 4,
        "order": "ascending",
        "stepRange": {"from": 1.0, "to": None},
        "requests": [
            {
                "requestId": "r",
                "afterStep": 2.0,
                "series": {
                    "attribute": "m",
                    "holder": {"identifier": f"CUSTOM/{fake_neptune3.project}/asc", "type": "experiment"},
                    "lineage": "NONE",
                    "includePreview": False,
                },
            }
        ],
    }
    resp = client.post(
        "/api/leaderboard/v1/proto/attributes/series/float",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    parsed = series_values_pb2.ProtoFloatSeriesValuesResponseDTO.FromString(resp.content)
    series = parsed.series[0]
    assert series.requestId == "r" and series.series.total_item_count == 9
    assert [p.step for p in series.series.values] == [3.0, 4.0, 5.0, 6.0]
    unauthorized = client.post("/api/leaderboard/v1/proto/attributes/series/float", json=body)
    assert unauthorized.status_code == 401
    client.close()


def test_string_series_pages_with_search_after(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.series_page_points = 7
    run = fake_neptune3.data.run("strings")
    run.string_series("s/one", np.arange(30.0), [f"one-{i}" for i in range(30)])
    run.string_series("s/two", np.arange(5.0) + 0.5, [f"two-{i}" for i in range(5)])
    df = nq_runs.fetch_series(runs=["strings"], attributes=["s/one", "s/two"], lineage_to_the_root=False)
    assert list(df[("s/one")].dropna()) == [f"one-{i}" for i in range(30)]
    assert list(df[("s/two")].dropna()) == [f"two-{i}" for i in range(5)]
    assert fake_neptune3.count(r"/attributes/series$") >= 5
    tail = nq_runs.fetch_series(runs=["strings"], attributes="s/one", tail_limit=10)
    assert list(tail["s/one"]) == [f"one-{i}" for i in range(20, 30)]


def test_search_and_attribute_paging_at_scale(fake_neptune3: FakeNeptune3) -> None:
    for i in range(10_010):
        fake_neptune3.data.run(f"r{i:05d}")
    runs = nq_runs.list_runs()
    assert len(runs) == 10_010 and len(set(runs)) == 10_010
    searches = fake_neptune3.requests_to(r"entries/search/$")
    assert [c.body["pagination"]["offset"] for c in searches] == [0, 10_000]

    wide = fake_neptune3.data.run("wide").configs({f"p/{i:05d}": i for i in range(10_020)})
    assert wide.sys_id
    fake_neptune3.reset_log()
    df = nq_runs.fetch_runs_table(runs=["wide"], attributes=r"^p/")
    assert df.shape == (1, 10_020)
    assert int(df.loc["wide", "p/10019"]) == 10_019
    definitions = fake_neptune3.requests_to(r"definitions/query$")
    assert any("nextPageToken" in c.body["nextPage"] for c in definitions)


def test_archived_and_runs_without_custom_id(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("live")
    fake_neptune3.data.run("old", archived=True)
    fake_neptune3.data.run(
        None, configs={"x": 1}
    )  # no sys/custom_run_id: only a filtered listing can skip it
    not_archived = Filter.ne(Attribute("sys/archived", type="bool"), True)
    has_id = Filter.matches(Attribute("sys/custom_run_id", type="string"), ".+")
    assert set(nq_runs.list_runs(runs=has_id & not_archived)) == {"live"}
    assert set(nq_runs.list_runs(runs=has_id)) == {"live", "old"}
    assert fake_neptune3.data.project().runs[2].custom_run_id is None


# -- faults -----------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::neptune_query.warnings.Http503Warning")
def test_fault_5xx_is_retried(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("a")
    fault = fake_neptune3.faults.add(r"entries/search", "5xx", times=2)
    assert nq_runs.list_runs() == ["a"]
    assert fault.hits == 2
    assert fake_neptune3.count(r"entries/search") == 3


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.Http429Warning")
def test_fault_429_honours_retry_after(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("a").metric("m", [1.0, 2.0], [3.0, 4.0])
    fault = fake_neptune3.faults.add(r"/series/float$", "429", times=2, retry_after=0.3)
    started = time.monotonic()
    df = nq_runs.fetch_metrics(runs=["a"], attributes="m")
    assert time.monotonic() - started >= 0.6
    assert list(df["m"]) == [3.0, 4.0]
    assert fault.hits == 2
    assert [r.status for r in fake_neptune3.requests_to(r"/series/float$")] == [429, 429, 200]


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.Http5xxWarning")
def test_fault_persistent_5xx_gives_up(fake_neptune3: FakeNeptune3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_QUERY_RETRY_SOFT_TIMEOUT", "1")
    fake_neptune3.faults.add(r"entries/search", "5xx", times=None, status=500)
    with pytest.raises(nq_exc.NeptuneRetryError):
        nq_runs.list_runs()


def test_fault_expired_token_is_not_retried(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.faults.add(r"entries/search", "expired_token", times=1)
    with pytest.raises(nq_exc.NeptuneUnexpectedResponseError) as err:
        nq_runs.list_runs()
    assert "401" in str(err.value)


def test_short_lived_tokens_are_refreshed(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("a")
    fake_neptune3.token_ttl_seconds = 20  # below the clients' 30 s margin: they refresh before every call
    nq.set_api_token(fake_neptune3.make_api_token())  # a new token means a new (uncached) HTTP client
    assert nq_runs.list_runs() == ["a"]
    assert nq_runs.list_runs() == ["a"]
    assert fake_neptune3.count(r"/protocol/openid-connect/token$", "POST") >= 1


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.HttpOtherWarning")
def test_fault_slow_response_and_client_timeout(
    fake_neptune3: FakeNeptune3, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_neptune3.data.run("a")
    fake_neptune3.faults.add(r"entries/search", "slow", delay=0.5, times=1)
    started = time.monotonic()
    assert nq_runs.list_runs() == ["a"]
    assert time.monotonic() - started >= 0.5

    monkeypatch.setenv("NEPTUNE_HTTP_REQUEST_TIMEOUT_SECONDS", "1")
    nq.set_api_token(fake_neptune3.make_api_token())  # the timeout is fixed when the client is created
    fake_neptune3.reset_log()
    fault = fake_neptune3.faults.add(r"entries/search", "slow", delay=2.0, times=1)
    assert nq_runs.list_runs() == ["a"]  # the first attempt times out on the client side and is retried
    assert fault.hits == 1
    assert fake_neptune3.count(r"entries/search") == 2


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.HttpOtherWarning")
def test_fault_connection_reset_is_retried(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("a")
    fake_neptune3.faults.add(r"entries/search", "reset", times=1)
    assert nq_runs.list_runs() == ["a"]


def test_fault_access_denied(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.faults.add(r"entries/search", "access_denied", times=1)
    with pytest.raises(nq_exc.NeptuneProjectInaccessible):
        nq_runs.list_runs()


@pytest.mark.filterwarnings("ignore::neptune_query.warnings.HttpOtherWarning")
def test_fault_on_token_exchange_is_retried(fake_neptune3: FakeNeptune3) -> None:
    fake_neptune3.data.run("a")
    fault = fake_neptune3.faults.add(r"/authorization/oauth-token$", "5xx", times=2)
    nq.set_api_token(fake_neptune3.make_api_token())  # force a new exchange
    assert nq_runs.list_runs() == ["a"]
    assert fault.hits == 2


def test_rejected_api_key(fake_neptune3: FakeNeptune3) -> None:
    nq.set_api_token(fake_neptune3.make_api_token("not-a-valid-key", valid=False))
    with pytest.raises(nq_exc.NeptuneInvalidCredentialsError):
        nq_runs.list_runs()


def test_unknown_project_is_404(fake_neptune3: FakeNeptune3) -> None:
    with pytest.raises(nq_exc.NeptuneUnexpectedResponseError):
        nq_runs.list_runs(project="nobody/nothing")


def test_expired_signed_url_is_signed_again(fake_neptune3: FakeNeptune3, tmp_path: Path) -> None:
    fake_neptune3.data.run("f").file("files/a", b"payload", mime_type="text/plain", name="a.txt")
    fake_neptune3.faults.add(r"^/_fake_storage/", "http_error", status=400, times=1, method="GET")
    table = nq_runs.fetch_runs_table(runs=["f"], attributes=["files/a"])
    out = nq_runs.download_files(files=table, destination=tmp_path)
    assert Path(out["files/a"].dropna().iloc[0]).read_bytes() == b"payload"
    assert fake_neptune3.count(r"/storagebridge/v1/signedUrl$") == 2


def test_missing_blob_is_skipped(fake_neptune3: FakeNeptune3, tmp_path: Path) -> None:
    fake_neptune3.data.run("f").file("files/a", b"payload", name="a.bin")
    fake_neptune3.store.blobs.clear()
    table = nq_runs.fetch_runs_table(runs=["f"], attributes=["files/a"])
    out = nq_runs.download_files(files=table, destination=tmp_path)
    assert out.isna().all().all()


# -- client versions ---------------------------------------------------------------------------------------------
def test_compat_smoke_with_installed_client() -> None:
    from tests.fakes.neptune3 import compat_smoke

    counts = compat_smoke.main()
    assert counts["/api/backend/v1/authorization/oauth-token"] == 1
    assert "/api/backend/v1/clients/config" not in counts  # >= 1.10 skips config + discovery


@pytest.mark.skipif(
    not os.environ.get("NEPTUNE3_FAKE_COMPAT_PYTHON"),
    reason="set NEPTUNE3_FAKE_COMPAT_PYTHON to an interpreter with another neptune-query (e.g. 1.7.0)",
)
def test_compat_smoke_with_other_client_version() -> None:
    python = os.environ["NEPTUNE3_FAKE_COMPAT_PYTHON"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [python, "-m", "tests.fakes.neptune3.compat_smoke"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK" in done.stdout


def test_stop_leaves_no_handler_threads() -> None:
    def handler_threads() -> int:
        return sum("process_request_thread" in t.name for t in threading.enumerate())

    before = handler_threads()
    with running_fake_neptune3() as fake:
        fake.data.run("a")
        assert nq_runs.list_runs() == ["a"]  # leaves a keep-alive connection in the client's pool
    deadline = time.monotonic() + 5
    while handler_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handler_threads() <= before
