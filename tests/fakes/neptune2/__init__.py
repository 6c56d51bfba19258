"""Fake Neptune 2.x backend for tests and benchmarks: serves the unmodified neptune 1.x client over HTTP.

In tests, use the function-scoped ``fake_neptune2`` fixture (started server + client environment)::

    from tests.fakes.neptune2 import File, fixtures
    fake_neptune2 = fixtures.fake_neptune2

    def test_something(fake_neptune2):
        fake_neptune2.add_run("ws/proj", attrs={"params/lr": 0.1},
                              float_series={"train/loss": ([0, 1, 2], [0.9, 0.5, 0.2], [t0, t0 + 1000, t0 + 2000])},
                              files={"model/ckpt": File(b"...", name="ckpt", ext="pt")})
        run = neptune.init_run(with_id="PROJ-1", project="ws/proj", mode="read-only")
        fake_neptune2.faults.add("getFloatSeriesValues", "5xx", times=1)
        assert fake_neptune2.count("getFloatSeriesValues") == ...

Outside pytest (benchmarks, subprocesses)::

    with FakeNeptune2Server() as srv, fixtures.neptune2_client_env(srv):   # in-process client
        ...
    subprocess.run(cmd, env={**os.environ, **srv.client_env()})             # child process
"""

from .model import (
    Artifact,
    ArtifactFile,
    Container,
    File,
    FileSeries,
    FileSeriesItem,
    FileSet,
    FloatSeries,
    GitRef,
    NotebookRef,
    Project,
    Raw,
    RunState,
    StringSeries,
)
from .server import (
    MAX_SERVER_OFFSET,
    TOKEN_VERSION_MESSAGE,
    FakeNeptune2Server,
    Fault,
    Faults,
    RequestRecord,
)

__all__ = [
    "MAX_SERVER_OFFSET",
    "TOKEN_VERSION_MESSAGE",
    "Artifact",
    "ArtifactFile",
    "Container",
    "FakeNeptune2Server",
    "Fault",
    "Faults",
    "File",
    "FileSeries",
    "FileSeriesItem",
    "FileSet",
    "FloatSeries",
    "GitRef",
    "NotebookRef",
    "Project",
    "Raw",
    "RequestRecord",
    "RunState",
    "StringSeries",
]
