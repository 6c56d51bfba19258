"""Fake Pluto server for tests and benchmarks.

Entry points:

* ``FakePluto`` (``server.py``): ``with FakePluto() as srv`` -> ``srv.url``, ``srv.api_key``,
  ``srv.client_env(home=, pluto_dir=)``, ``srv.client_settings(**overrides)``;
  inspection via ``srv.runs`` / ``srv.run(id)`` / ``srv.run_by_external(project, ext)`` /
  ``srv.run_by_name(project, name)`` / ``srv.ingested(project, run_id)`` / ``srv.projects``;
  request log ``srv.requests``, counters ``srv.counts`` / ``srv.count(endpoint)``, handler
  crashes ``srv.errors``; ``srv.reap_stale_runs(now=)``, ``srv.cancel_run(id)``.
* ``srv.faults.add(path_regex, kind, times=1, method=, status=, retry_after=, delay=, process=)``
  with kinds ``"5xx" | "429" | "drop" | "slow" | "422"`` (``faults.py``).
* pytest fixtures ``fake_pluto``, ``fake_pluto_module``, ``pluto_client_env`` (``fixtures.py``).
* ``python -m tests.fakes.pluto.bench`` measures the ingest rate (``bench.py``).

Read state after the client has finished, or under ``srv.state.lock``.
"""

from .faults import Fault, FaultSet
from .server import DEFAULT_API_KEY, FakePluto, RequestRecord
from .state import DataRow, FileRow, LogRow, MetricSeries, Project, Run

__all__ = [
    "DEFAULT_API_KEY",
    "DataRow",
    "FakePluto",
    "Fault",
    "FaultSet",
    "FileRow",
    "LogRow",
    "MetricSeries",
    "Project",
    "RequestRecord",
    "Run",
]
