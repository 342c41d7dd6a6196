"""Heartbeat files: each long-running component writes a small JSON status into `<state_dir>/status/`.

`newsflow status` and `newsflow run`'s live line read them, so a person sees what each process is doing
without a metrics stack. Writes are throttled and atomic (write + rename).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

_last_write: dict[str, float] = {}
MIN_INTERVAL_S = 1.0


def status_dir(state_dir: Path | None = None) -> Path:
    if state_dir is None:
        from pipeline.settings import get_settings

        state_dir = get_settings().stack.state_dir
    return state_dir / "status"


def write(component: str, data: dict[str, Any], *, force: bool = False, state_dir: Path | None = None) -> None:
    """Record a component's latest figures (at most once a second unless forced)."""
    now = time.time()
    if not force and now - _last_write.get(component, 0.0) < MIN_INTERVAL_S:
        return
    _last_write[component] = now
    folder = status_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{component}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({**data, "pid": os.getpid(), "updated": now}, default=str))
    tmp.replace(folder / f"{component}.json")


def read_all(state_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Component -> its last status (with `age_s`, seconds since it was written)."""
    folder = status_dir(state_dir)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data["age_s"] = time.time() - float(data.get("updated", 0))
        out[path.stem] = data
    return out


def clear(state_dir: Path | None = None) -> None:
    """Forget the previous run's heartbeats, so a new run's line starts from zero."""
    folder = status_dir(state_dir)
    for path in folder.glob("*.json") if folder.is_dir() else []:
        path.unlink(missing_ok=True)
