"""Version-independent smoke check of the fake with whatever neptune-query is importable.

Run it with another interpreter to check an older client, e.g. neptune-query 1.7.0 (which uses the separate
``neptune-api`` package, bootstraps via clients/config + OpenID discovery, and pages float series in
ascending order)::

    uv venv /tmp/nq17 && VIRTUAL_ENV=/tmp/nq17 uv pip install "neptune-query==1.7.0"
    PYTHONPATH=/work/main /tmp/nq17/bin/python -m tests.fakes.neptune3.compat_smoke

Exit status 0 means every check passed; the test-suite runs ``main()`` with the project's own client and,
when ``NEPTUNE3_FAKE_COMPAT_PYTHON`` names another interpreter, in a subprocess with that one.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import tempfile

import numpy as np

from .fixtures import running_fake_neptune3

BIG = 1_000_050  # more than one float-series page (the client asks 1M points per single-series request)


def main() -> dict[str, int]:
    """Write builder data, read it back through the public API, assert; returns request counts by path."""
    import neptune_query as nq
    import neptune_query.runs as nq_runs

    with running_fake_neptune3(project="compat-ws/compat-proj") as fake:
        base = fake.data.run(
            "r1", experiment_name="exp1", configs={"lr": 0.1, "opt": "adam"}, tags=["a", "b"]
        )
        base.metric("m/loss", np.arange(5) * 0.1, np.arange(5) * 1.5)
        base.string_series("log/txt", [1, 2], ["hello", "world"])
        base.histogram_series("h", [1], [([0, 1, 2], [3, 4])])
        base.file("f/model", b"abc", name="m.txt", mime_type="text/plain")
        fake.data.run("r2", fork_of="r1", fork_step=0.2).metric("m/loss", [0.3, 0.5], [10, 11])
        fake.data.run("big").metric("x", np.arange(float(BIG)), np.arange(float(BIG)) * 2)

        assert nq_runs.list_runs() == ["big", "r1", "r2"]
        assert nq.list_experiments() == ["exp1"]
        table = nq_runs.fetch_runs_table(runs=["r1"], attributes=["lr", "opt", "sys/tags", "m/loss"])
        assert table.loc["r1", "opt"] == "adam" and table.loc["r1", "sys/tags"] == {"a", "b"}
        assert table.loc["r1", "m/loss"] == 6.0
        lineage = nq_runs.fetch_metrics(runs=["r2"], attributes="m/loss")
        assert list(lineage.loc["r2"].index) == [0.0, 0.1, 0.2, 0.3, 0.5]
        series = nq_runs.fetch_series(runs=["r1"], attributes=["log/txt", "h"])
        assert list(series["log/txt"].dropna()) == ["hello", "world"]
        assert series["h"].dropna().iloc[0].values == [3.0, 4.0]
        big = nq_runs.fetch_metrics(runs=["big"], attributes="x")
        assert len(big) == BIG and bool((big["x"].to_numpy() == np.arange(float(BIG)) * 2).all())
        files = nq_runs.fetch_runs_table(runs=["r1"], attributes=["f/model"])
        with tempfile.TemporaryDirectory() as target:
            out = nq_runs.download_files(files=files, destination=target)
            assert pathlib.Path(out["f/model"].dropna().iloc[0]).read_bytes() == b"abc"
        assert fake.server_errors == [], fake.server_errors
        counts: dict[str, int] = {}
        for record in fake.requests:
            counts[record.path] = counts.get(record.path, 0) + 1
        return counts


if __name__ == "__main__":
    result = main()
    print(f"neptune-query {importlib.metadata.version('neptune-query')}: OK")
    for path, count in sorted(result.items()):
        print(f"{count:4d} {path}")
