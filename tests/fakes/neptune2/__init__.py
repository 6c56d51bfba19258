"""Fake Neptune 2.x backend for tests and benchmarks: serves the unmodified neptune 1.x client over HTTP.

Use the ``fake_neptune2`` fixture from :mod:`tests.fakes.neptune2.fixtures`, or start
:class:`FakeNeptune2Server` yourself and apply :meth:`FakeNeptune2Server.client_env`.
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
