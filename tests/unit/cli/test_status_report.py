"""`newsflow status` judges each component from its heartbeat: exited, silent, upkeep overdue, or fine."""

from __future__ import annotations

import os

from pipeline.cli.report import component_state
from pipeline.settings import Settings


def beat(**figures: object) -> dict[str, object]:
    return {"pid": os.getpid(), "age_s": 1.0, **figures}


def test_a_worker_whose_upkeep_is_overdue_is_a_problem() -> None:
    settings = Settings()  # upkeep every 60 s: overdue after three periods
    assert component_state(beat(upkeep_s_ago=30), settings) == ("running", False)
    assert component_state(beat(upkeep_s_ago=181), settings) == ("upkeep overdue", True)
    assert component_state(beat(upkeep_s_ago=None), settings) == ("running", False)  # not the assign stage


def test_silent_and_exited_components() -> None:
    settings = Settings()
    assert component_state(beat(age_s=600.0), settings)[1] is True
    assert component_state(beat(pid=-1), settings) == ("exited", False)
    assert component_state(beat(state="stopped", age_s=600.0), settings) == ("stopped", False)
