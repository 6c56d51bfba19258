"""Golden Neptune 3 data written with the real writer (neptune-scale), and what it should read back as.

``write_golden_data()`` must run while a fake's ``client_env()`` is applied (e.g. inside
``fixtures.running_fake_neptune3``); ``fixtures.fake_neptune3_golden`` does exactly that once per module.

Contents (project of the fake):

- ``golden-a`` (experiment ``exp-golden``, created at ``T0``): configs of every type under ``cfg/``, tags
  ``golden, alpha`` and group tag ``group-1``; ``metrics/loss`` at steps ``LOSS_STEPS`` (0.0..4.9) with value
  ``loss(k)`` and timestamp ``T0 + k s``, then preview points at 5.0 (0.015, completion 0.5) and 5.5 (0.012,
  0.8); ``metrics/acc`` at steps 0..9; ``logs/text`` (3 lines); histograms ``hist/w`` (counts, steps 1-2) and
  ``hist/d`` (densities, step 2); files ``files/model``, ``files/config`` (JSON) and file series ``files/series``.
- ``golden-b`` (experiment ``exp-other``): ``metrics/loss`` 10..1 at steps 0..9, then two points whose steps
  both round to 10.0 on the wire: the first (0.5) is kept, the second is refused (``EXPECTED_REJECTED``).
- ``golden-fork``: fork of ``golden-a`` at step 2.0, ``metrics/loss`` 101..110 at steps 2.1..3.0.
- ``golden-fork2``: fork of ``golden-fork`` at step 2.5, ``metrics/loss`` 200, 201 at steps 2.6, 2.7.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
LOSS_STEPS = [round(k * 0.1, 6) for k in range(50)]


def loss(k: int) -> float:
    return 1.0 / (k + 1)


def scale_run(**kwargs: Any) -> Any:
    """A neptune-scale Run without console capture / source tracking, so the data is exactly what we log."""
    from neptune_scale import Run

    return Run(enable_console_log_capture=False, source_tracking_config=None, **kwargs)


def write_golden_data() -> None:
    """Write runs with every kind of data through the real neptune-scale client.

    Roots are written concurrently; the fork (and the fork of the fork) must wait until its parent exists
    on the server, as with the real backend. Takes about 10 s (neptune-scale spawns a sync process per run).
    """
    from neptune_scale.types import File as ScaleFile
    from neptune_scale.types import Histogram as ScaleHistogram

    run_a = scale_run(run_id="golden-a", experiment_name="exp-golden", creation_time=T0)
    run_b = scale_run(run_id="golden-b", experiment_name="exp-other", creation_time=T0 + timedelta(minutes=1))

    run_a.log_configs(
        {
            "cfg/lr": 0.001,
            "cfg/batch": 64,
            "cfg/optimizer": "adam",
            "cfg/use_amp": True,
            "cfg/started": T0 + timedelta(hours=1),
            "cfg/layers": ["conv", "fc"],
        }
    )
    run_a.add_tags(["golden", "alpha"])
    run_a.add_tags(["group-1"], group_tags=True)
    for k, step in enumerate(LOSS_STEPS):
        run_a.log_metrics({"metrics/loss": loss(k)}, step=step, timestamp=T0 + timedelta(seconds=k))
    for i in range(10):
        run_a.log_metrics({"metrics/acc": i / 10}, step=i, timestamp=T0 + timedelta(seconds=100 + i))
    run_a.log_metrics(
        {"metrics/loss": 0.015},
        step=5.0,
        timestamp=T0 + timedelta(seconds=60),
        preview=True,
        preview_completion=0.5,
    )
    run_a.log_metrics(
        {"metrics/loss": 0.012},
        step=5.5,
        timestamp=T0 + timedelta(seconds=61),
        preview=True,
        preview_completion=0.8,
    )
    for i, text in enumerate(["first line", "second line", "third ünïcode line"], start=1):
        run_a.log_string_series({"logs/text": text}, step=i, timestamp=T0 + timedelta(seconds=200 + i))
    run_a.log_histograms(
        {"hist/w": ScaleHistogram(bin_edges=[0, 1, 2, 3], counts=[5, 7, 1])},
        step=1,
        timestamp=T0 + timedelta(seconds=300),
    )
    run_a.log_histograms(
        {
            "hist/w": ScaleHistogram(bin_edges=[0, 1, 2, 3], counts=[4, 8, 2]),
            "hist/d": ScaleHistogram(bin_edges=[-1.0, 0.0, 1.0], densities=[0.25, 0.75]),
        },
        step=2,
        timestamp=T0 + timedelta(seconds=301),
    )
    run_a.assign_files(
        {
            "files/model": b"model-bytes-\x00\x01\x02",
            "files/config": ScaleFile(source=b'{"a": 1}', mime_type="application/json"),
        }
    )
    run_a.log_files({"files/series": b"series-step-1"}, step=1, timestamp=T0 + timedelta(seconds=400))
    run_a.log_files({"files/series": b"series-step-2"}, step=2, timestamp=T0 + timedelta(seconds=401))

    run_b.log_configs({"cfg/lr": 0.1, "cfg/optimizer": "sgd"})
    run_b.add_tags(["golden"])
    for i in range(10):
        run_b.log_metrics({"metrics/loss": 10.0 - i}, step=i, timestamp=T0 + timedelta(seconds=i))
    # steps keep 6 decimals on the wire: both of these become step 10.0, and the second one is refused
    run_b.log_metrics({"metrics/loss": 0.5}, step=10.0000001, timestamp=T0 + timedelta(seconds=10))
    run_b.log_metrics({"metrics/loss": 0.25}, step=10.0000004, timestamp=T0 + timedelta(seconds=11))

    assert run_a.wait_for_processing(timeout=60, verbose=False)
    fork = scale_run(run_id="golden-fork", fork_run_id="golden-a", fork_step=2.0)
    for k in range(1, 11):
        fork.log_metrics(
            {"metrics/loss": 100.0 + k}, step=2.0 + k / 10, timestamp=T0 + timedelta(seconds=500 + k)
        )
    assert fork.wait_for_processing(timeout=60, verbose=False)
    fork2 = scale_run(run_id="golden-fork2", fork_run_id="golden-fork", fork_step=2.5)
    fork2.log_metrics({"metrics/loss": 200.0}, step=2.6, timestamp=T0 + timedelta(seconds=600))
    fork2.log_metrics({"metrics/loss": 201.0}, step=2.7, timestamp=T0 + timedelta(seconds=601))
    for run in (run_a, run_b, fork, fork2):
        run.close(timeout=60)


RUN_IDS = ("golden-a", "golden-b", "golden-fork", "golden-fork2")
EXPECTED_REJECTED = [("golden-b", "metrics/loss")]  # (run, attribute) of writes the server refuses
