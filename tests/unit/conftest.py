"""Fixtures shared by unit tests of several packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.loopback import Server


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.http.shutdown()
    s.http.server_close()
