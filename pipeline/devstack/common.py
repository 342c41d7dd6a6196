"""What every part of the local stack shares: the two component names, each one's directory in the state dir
(`settings.stack.state_dir`), the `deploy/stack/` templates and dependency-only poms, and a probe's result.

Each component lives in `<state_dir>/<name>/` (config, data, logs, pid file), so a stop/start keeps its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipeline.errors import StackError
from pipeline.settings import PROJECT_ROOT, Settings

DEPLOY_DIR = PROJECT_ROOT / "deploy" / "stack"
KAFKA = "kafka"
OPENSEARCH = "opensearch"
COMPONENTS: tuple[str, ...] = (KAFKA, OPENSEARCH)
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Probe:
    """One health check of a Kafka or search engine (ours or not)."""

    healthy: bool
    detail: str
    version: str | None = None


def check_name(name: str) -> None:
    if name not in COMPONENTS:
        raise StackError(f"unknown stack component {name!r}; expected one of {', '.join(COMPONENTS)}")


def component_dir(settings: Settings, name: str) -> Path:
    # Resolved, so every caller (whatever its cwd or spelling of the path) builds the same cmdline markers.
    return settings.stack.state_dir.resolve() / name


def pid_file(settings: Settings, name: str) -> Path:
    return component_dir(settings, name) / f"{name}.pid"


def console_log(settings: Settings, name: str) -> Path:
    """stdout/stderr of the JVM (OpenSearch logs to it; Kafka only for JVM-level failures)."""
    return component_dir(settings, name) / "console.log"


def pom(name: str) -> Path:
    return DEPLOY_DIR / f"{name}.pom.xml"


def render(template: str, **values: object) -> str:
    """Fill a `deploy/stack/*.tmpl` file; `$name` placeholders, so log4j's `%d{...}` needs no escaping."""
    text = (DEPLOY_DIR / template).read_text(encoding="utf-8")
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
