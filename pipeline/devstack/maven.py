"""Finding what the JVMs need: the `java` binary and each component's classpath from Maven.

No Docker: the jars come from Maven Central through the dependency-only poms in `deploy/stack/`; the
classpath is cached in the component's state dir and re-resolved only when the pom changes (or a jar is gone).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from pipeline.devstack.common import KAFKA, OPENSEARCH, component_dir, pom
from pipeline.devstack.logs import shorten
from pipeline.errors import StackError
from pipeline.settings import PROJECT_ROOT, Settings

# One Maven at a time: two Maven JVMs on a 2-core box take longer than one after the other.
_maven_lock = threading.Lock()


def pom_version(name: str) -> str:
    """The version a pom pins (kafka.version / opensearch.runner.version), shown before anything runs."""
    prop = "kafka.version" if name == KAFKA else "opensearch.runner.version"
    m = re.search(rf"<{re.escape(prop)}>([^<]+)</", pom(name).read_text(encoding="utf-8"))
    if not m:
        return "unknown"
    version = m.group(1).strip()
    # codelibs' runner appends its own build number to the OpenSearch version: 2.19.1.0 runs 2.19.1.
    return ".".join(version.split(".")[:3]) if name == OPENSEARCH else version


def classpath(settings: Settings, name: str) -> str:
    """The component's classpath, cached next to its data; re-resolved only if the pom (or a jar) changed."""
    if cached := cached_classpath(settings, name):
        return cached
    with _maven_lock:
        if cached := cached_classpath(settings, name):
            return cached  # (maybe resolved by another thread while we waited)
        cdir = component_dir(settings, name)
        cdir.mkdir(parents=True, exist_ok=True)
        _resolve_classpath(settings, pom(name), cdir / "classpath.txt")
        (cdir / "classpath.key").write_text(_pom_key(name) + "\n")
        return (cdir / "classpath.txt").read_text(encoding="utf-8").strip()


def _pom_key(name: str) -> str:
    return hashlib.sha256(pom(name).read_bytes()).hexdigest()


def cached_classpath(settings: Settings, name: str) -> str | None:
    """The cached classpath if it was resolved from the current pom and every jar is still in ~/.m2."""
    cdir = component_dir(settings, name)
    cp_file, key_file = cdir / "classpath.txt", cdir / "classpath.key"
    if not (cp_file.exists() and key_file.exists()) or key_file.read_text().strip() != _pom_key(name):
        return None
    cp = cp_file.read_text(encoding="utf-8").strip()
    return cp if cp and all(Path(jar).exists() for jar in cp.split(os.pathsep)) else None


def _resolve_classpath(settings: Settings, pom_path: Path, out: Path) -> None:
    """Ask Maven for the classpath: offline first (instant with a warm ~/.m2), then online."""
    mvn = shutil.which(settings.stack.maven)
    if mvn is None:
        raise StackError(
            f"Maven not found ({settings.stack.maven!r}): install Maven 3 or set stack.maven "
            "(NEWSFLOW_STACK__MAVEN)"
        )
    base = [mvn, "-q", "-B", "-f", str(pom_path), "dependency:build-classpath", f"-Dmdep.outputFile={out}"]
    result = None
    for cmd in ([*base[:3], "-o", *base[3:]], base):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"Maven timed out resolving {pom_path.name} (Maven Central unreachable?)") from None
        if result.returncode == 0 and out.exists():
            return
    assert result is not None
    lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if "[ERROR]" in ln]
    reason = shorten(lines[0].replace("[ERROR]", "").strip() if lines else f"exit code {result.returncode}")
    raise StackError(f"Maven could not resolve {pom_path.relative_to(PROJECT_ROOT)} (offline?): {reason}")


def java(settings: Settings) -> str:
    found = shutil.which(settings.stack.java)
    if found is None:
        raise StackError(
            f"Java not found ({settings.stack.java!r}): install a JDK 17+ or set stack.java "
            "(NEWSFLOW_STACK__JAVA)"
        )
    return found
