"""Fixtures of the ingest tests: a seen-store in a fresh folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ingest.seen import SeenStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "poller" / "seen.sqlite"  # parent folders do not exist yet


@pytest.fixture
def store(db_path: Path) -> Iterator[SeenStore]:
    s = SeenStore(db_path, ttl_days=30)
    yield s
    s.close()
