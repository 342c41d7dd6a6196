"""Shared fixtures. Integration tests run against the real local stack (Kafka + OpenSearch), which the
session starts when it is not already running and stops again afterwards if it started it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.evaluation.isolation import isolated_env
from pipeline.settings import Settings, get_settings, load_settings


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The real local stack, started on demand (set NEWSFLOW_KEEP_STACK=1 to leave it running)."""
    from pipeline import devstack as local_stack

    settings = get_settings()
    was_up = all(c.healthy for c in local_stack.status(settings))
    local_stack.ensure_up(settings)
    yield settings
    if not was_up and os.environ.get("NEWSFLOW_KEEP_STACK") != "1":
        local_stack.down(settings, echo=lambda *_: None)


class Isolated:
    """Settings for one test plus the environment that gives child processes the very same settings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.settings: Settings = load_settings()


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Isolated:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = isolated_env(prefix, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Isolated(env)
