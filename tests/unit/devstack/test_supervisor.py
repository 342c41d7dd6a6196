"""The live status line (`pipeline/devstack/supervisor.py`) and the heartbeat files (`pipeline/status.py`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import status
from pipeline.devstack.supervisor import status_line

OFFLINE = "feeds unreachable (offline?)"


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The throttle is module-global: give each test its own."""
    monkeypatch.setattr(status, "_last_write", {})
    yield


# --- status_line -------------------------------------------------------------------------------------------


def test_status_line_without_heartbeats_is_all_zero() -> None:
    assert status_line({}) == (
        "feeds polled 0 (failed 0) | articles 0 | stories 0 | duplicates 0 | indexed 0 | dead letters 0"
    )


def test_status_line_numbers_come_from_heartbeats() -> None:
    beats = {
        "poller": {"cycles": 2, "polled": 10, "failed": 1, "produced": 37},
        "worker": {"new_stories": 12, "duplicates": 5, "dead_letters": 2},
        "indexer": {"indexed": 30, "dead_letters": 1, "retries": 0, "last_error": None},
    }
    assert status_line(beats) == (
        "feeds polled 10 (failed 1) | articles 37 | stories 12 | duplicates 5 | indexed 30 | dead letters 3"
    )


def test_status_line_offline_hint_when_every_polled_feed_failed() -> None:
    line = status_line({"poller": {"cycles": 1, "polled": 3, "failed": 3, "produced": 0}})
    assert line.startswith("feeds polled 3 (failed 3) | articles 0")
    assert line.endswith(f" | {OFFLINE} - see `newsflow status`")


@pytest.mark.parametrize(
    "poller",
    [
        {"cycles": 1, "polled": 3, "failed": 2},  # some feeds worked
        {"cycles": 0, "polled": 0, "failed": 0},  # nothing polled yet
        {"cycles": 1, "polled": 0, "failed": 0},  # no feeds configured
    ],
)
def test_no_offline_hint_otherwise(poller: dict[str, int]) -> None:
    assert OFFLINE not in status_line({"poller": poller})


def test_status_line_shows_search_engine_retries() -> None:
    error = "ConnectionError: " + "x" * 200
    line = status_line({"indexer": {"indexed": 4, "retries": 2, "last_error": error}})
    assert line.endswith(" | search engine retrying: " + error[:60])
    # an old error after no retries is not shown
    assert "retrying" not in status_line({"indexer": {"indexed": 4, "retries": 0, "last_error": error}})


# --- heartbeat files ---------------------------------------------------------------------------------------


def test_write_read_all_round_trip(tmp_path: Path) -> None:
    status.write("poller", {"polled": 3, "failing_feeds": {"u": "HTTP 500"}}, state_dir=tmp_path)
    status.write("indexer", {"indexed": 9}, state_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "status").iterdir())
    assert files == ["indexer.json", "poller.json"]  # no temporary files left behind

    beats = status.read_all(tmp_path)
    assert sorted(beats) == ["indexer", "poller"]
    assert beats["poller"]["polled"] == 3
    assert beats["poller"]["failing_feeds"] == {"u": "HTTP 500"}
    assert beats["poller"]["pid"] == os.getpid()
    assert beats["indexer"]["indexed"] == 9
    assert 0 <= beats["indexer"]["age_s"] < 5


def test_second_write_within_a_second_is_skipped_unless_forced(tmp_path: Path) -> None:
    status.write("worker", {"tagged": 1}, state_dir=tmp_path)
    status.write("worker", {"tagged": 2}, state_dir=tmp_path)
    assert status.read_all(tmp_path)["worker"]["tagged"] == 1
    status.write("worker", {"tagged": 3}, state_dir=tmp_path, force=True)
    assert status.read_all(tmp_path)["worker"]["tagged"] == 3
    # the throttle is per component
    status.write("indexer", {"indexed": 1}, state_dir=tmp_path)
    assert status.read_all(tmp_path)["indexer"]["indexed"] == 1


def test_write_after_the_interval_is_not_throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status.write("worker", {"tagged": 1}, state_dir=tmp_path)
    status._last_write["worker"] -= status.MIN_INTERVAL_S + 0.01
    status.write("worker", {"tagged": 2}, state_dir=tmp_path)
    assert status.read_all(tmp_path)["worker"]["tagged"] == 2


def test_read_all_reports_age_and_skips_broken_files(tmp_path: Path) -> None:
    folder = tmp_path / "status"
    folder.mkdir()
    (folder / "poller.json").write_text(json.dumps({"polled": 1, "updated": time.time() - 100}))
    (folder / "broken.json").write_text("{not json")
    (folder / "notes.txt").write_text("ignored")
    beats = status.read_all(tmp_path)
    assert list(beats) == ["poller"]
    assert 99 < beats["poller"]["age_s"] < 105


def test_read_all_without_folder_is_empty(tmp_path: Path) -> None:
    assert status.read_all(tmp_path / "missing") == {}


def test_clear_forgets_heartbeats(tmp_path: Path) -> None:
    status.write("poller", {"polled": 1}, state_dir=tmp_path)
    status.write("indexer", {"indexed": 1}, state_dir=tmp_path)
    status.clear(tmp_path)
    assert status.read_all(tmp_path) == {}
    assert (tmp_path / "status").is_dir()
    status.clear(tmp_path / "never-created")  # nothing to clear is fine


def test_status_line_from_written_heartbeats(tmp_path: Path) -> None:
    status.write("poller", {"cycles": 1, "polled": 2, "failed": 2, "produced": 0}, state_dir=tmp_path)
    status.write("indexer", {"indexed": 0, "dead_letters": 4}, state_dir=tmp_path)
    line = status_line(status.read_all(tmp_path))
    assert line.startswith("feeds polled 2 (failed 2) | articles 0 |")
    assert "dead letters 4" in line
    assert OFFLINE in line


def test_status_line_adds_up_alerting_processes_once_they_report() -> None:
    beats = {
        "alerts-101": {"claimed": 5, "sent": 3, "partial": 1, "dead": 1},
        "alerts-102": {"claimed": 2, "sent": 2, "partial": 0, "dead": 0},
    }
    assert status_line(beats).endswith(" | indexed 0 | dead letters 0 | alerts sent 6 (dead 1)")
    assert "alerts" not in status_line({"poller": {"polled": 1}})
