"""Fake Pluto server for tests and benchmarks (see ``server.FakePluto``)."""

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
