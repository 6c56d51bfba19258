"""Test kit for plugin authors: contract suites every source, storage and sink subclasses, and in-memory
fakes to pair them with. The suites need pytest (a test-time dependency only).

    from migrate_core.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self, tmp_path):
            return MyStorage(tmp_path)
"""

from .contracts import ReadBack, SinkContract, SourceContract, StorageContract
from .fakes import MemoryRun, MemorySink, MemorySource, MemoryStorage, export_into, sample_runs, tables_equal

__all__ = [
    "MemoryRun",
    "MemorySink",
    "MemorySource",
    "MemoryStorage",
    "ReadBack",
    "SinkContract",
    "SourceContract",
    "StorageContract",
    "export_into",
    "sample_runs",
    "tables_equal",
]
