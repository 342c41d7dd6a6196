"""Reading the components' logs back: the one line that explains why a JVM failed to start or format.

Pure text handling (no knowledge of Kafka or OpenSearch): which log files to read is up to the caller.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tail(path: Path, since: int = 0, max_bytes: int = 256 * 1024) -> list[str]:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - max_bytes))
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


# The JVM's generic epilogue after the real reason (e.g. "Invalid initial heap size: -Xms5x").
_JVM_NOISE = re.compile(r"^Error: (Could not create the Java Virtual Machine|A fatal exception has occurred)")
_EXC = re.compile(r"^(Caused by: )?[\w.$]+(Exception|Error)\b(:.*)?$")
_LEVEL = re.compile(r"\b(ERROR|FATAL)\b|^Error:")


def error_line(lines: list[str]) -> str | None:
    """The line that best explains a failure: the exception after the last ERROR, that ERROR, or None."""
    lines = [ln.strip() for ln in lines if ln.strip() and not _JVM_NOISE.match(ln.strip())]
    errors = [i for i, ln in enumerate(lines) if _LEVEL.search(ln)]
    if errors:
        last = errors[-1]
        for ln in lines[last + 1 : last + 40]:
            if _EXC.match(ln):
                return ln
        return lines[last]
    exceptions = [ln for ln in lines if _EXC.match(ln)]
    return exceptions[-1] if exceptions else None


def meaningful_line(lines: list[str]) -> str | None:
    """`error_line`, else the last non-empty line (skipping our own start banners)."""
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("=== newsflow")]
    lines = [ln for ln in lines if not _JVM_NOISE.match(ln)]
    return error_line(lines) or (lines[-1] if lines else None)


def offsets(paths: list[Path]) -> list[tuple[Path, int]]:
    """Each log's current size, so a later `failure_hint` reads only what this start wrote."""
    return [(p, p.stat().st_size if p.exists() else 0) for p in paths]


def failure_hint(logs: list[tuple[Path, int]]) -> str:
    """`<line> (log: <path>)`: an error from any log written since this start, else a last line."""
    tails = [(path, tail(path, since)) for path, since in logs]
    for path, lines in tails:
        if line := error_line(lines):
            return f"{shorten(line)} (log: {path})"
    for path, lines in tails:
        if line := meaningful_line(lines):
            return f"{shorten(line)} (log: {path})"
    return f"no output (log: {logs[0][0]})"
