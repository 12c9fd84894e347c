"""One testbed for the whole suite (see support.py)."""

from collections.abc import Iterator

import pytest
from support import Testbed


@pytest.fixture(scope="session")
def bed() -> Iterator[Testbed]:
    testbed = Testbed()
    yield testbed
    testbed.close()
