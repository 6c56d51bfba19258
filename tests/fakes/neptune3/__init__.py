"""A fake Neptune 3.x backend for tests and benchmarks.

Serves the read API used by ``neptune-query`` and the ingest API used by ``neptune-scale`` from a local
``ThreadingHTTPServer``; see ``server.FakeNeptune3`` and the pytest fixture in ``fixtures``.
"""

from ..common import apply_env, restore_env
from .builder import DataBuilder, RunBuilder
from .faults import Fault, FaultInjector
from .server import FakeNeptune3, RequestRecord
from .store import FileRef, Histogram, Store

__all__ = [
    "DataBuilder",
    "FakeNeptune3",
    "Fault",
    "FaultInjector",
    "FileRef",
    "Histogram",
    "RequestRecord",
    "RunBuilder",
    "Store",
    "apply_env",
    "restore_env",
]
