"""The neptune3 source passes the contract every source must pass, against the fake Neptune 3.x backend."""

from __future__ import annotations

import pytest
from migrate_core.api import Source
from migrate_core.testing import SourceContract

from tests.plugins.neptune3.conftest import declare, make_source

pytestmark = pytest.mark.timeout(60)


class TestNeptune3Source(SourceContract):
    @pytest.fixture
    def source(self, fake_neptune3) -> Source:
        declare(fake_neptune3)
        src = make_source()
        yield src
        src.close()
