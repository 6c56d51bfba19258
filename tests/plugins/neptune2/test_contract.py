"""The neptune2 source passes the contract every source must pass, against the fake Neptune 2.x server."""

from __future__ import annotations

import pytest
from migrate_core.api import Source
from migrate_core.testing import SourceContract

from tests.plugins.neptune2.conftest import declare, make_source

pytestmark = pytest.mark.timeout(60)


class TestNeptune2Source(SourceContract):
    @pytest.fixture
    def source(self, fake_neptune2) -> Source:
        declare(fake_neptune2)
        src = make_source()
        yield src
        src.close()
