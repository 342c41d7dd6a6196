"""The local dev stack: a single-node Kafka (KRaft) and a single-node OpenSearch run as plain JVM processes.

No Docker: the jars come from Maven Central through the dependency-only poms in `deploy/stack/`; the
classpath is cached in the state dir (`settings.stack.state_dir`) and re-resolved only when a pom changes.
Each component lives in `<state_dir>/<name>/` (config, data, logs, pid file), so a stop/start keeps its data.
A Kafka or search engine already reachable at the configured address but not started by us (e.g. docker
compose) is used as is and never touched. We only signal a pid whose pid file *and* /proc cmdline are ours.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import httpx

from pipeline.errors import StackError
from pipeline.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

DEPLOY_DIR = PROJECT_ROOT / "deploy" / "stack"
KAFKA = "kafka"
OPENSEARCH = "opensearch"
COMPONENTS: tuple[str, ...] = (KAFKA, OPENSEARCH)
KAFKA_MAIN = "kafka.Kafka"
OPENSEARCH_MAIN = "org.codelibs.opensearch.runner.OpenSearchRunner"
PROBE_TOPIC = "newsflow.stack.healthcheck"
LOCALHOST = "127.0.0.1"

Echo = Callable[[str], object]

# Children started by this Python process: polling them reaps zombies, so "is it still alive?" stays truthful.
_children: dict[int, subprocess.Popen[bytes]] = {}
_quiet = threading.local()
# One Maven at a time: two Maven JVMs on a 2-core box take longer than one after the other.
_maven_lock = threading.Lock()


@dataclass(frozen=True)
class ComponentStatus:
    """One component as `newsflow stack status` sees it."""

    name: str
    managed: bool  # started by newsflow (pid file + cmdline verified)
    pid: int | None
    version: str | None
    address: str
    healthy: bool
    detail: str

    @property
    def external(self) -> bool:
        """Reachable and healthy, but not ours: we use it and never stop it."""
        return self.healthy and not self.managed


@dataclass(frozen=True)
class _Probe:
    healthy: bool
    detail: str
    version: str | None = None


# --------------------------------------------------------------------------------------------- paths & config


def component_dir(settings: Settings, name: str) -> Path:
    # Resolved, so every caller (whatever its cwd or spelling of the path) builds the same cmdline markers.
    return settings.stack.state_dir.resolve() / name


def pid_file(settings: Settings, name: str) -> Path:
    return component_dir(settings, name) / f"{name}.pid"


def console_log(settings: Settings, name: str) -> Path:
    """stdout/stderr of the JVM (OpenSearch logs to it; Kafka only for JVM-level failures)."""
    return component_dir(settings, name) / "console.log"


def kafka_server_log(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "server.log"


def _kafka_props(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "server.properties"


def _kafka_log4j(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "log4j.properties"


def _kafka_data(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "data"


def _opensearch_yml(settings: Settings) -> Path:
    # The runner keeps node 1 under <basePath>/node_1 and reads config/opensearch.yml from there.
    return component_dir(settings, OPENSEARCH) / "node_1" / "config" / "opensearch.yml"


def _pom(name: str) -> Path:
    return DEPLOY_DIR / f"{name}.pom.xml"


def _render(template: str, **values: object) -> str:
    """Fill a `deploy/stack/*.tmpl` file; `$name` placeholders, so log4j's `%d{...}` needs no escaping."""
    text = (DEPLOY_DIR / template).read_text(encoding="utf-8")
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def render_kafka_config(settings: Settings) -> str:
    k = settings.stack.kafka
    return _render(
        "kafka-server.properties.tmpl",
        port=k.port,
        controller_port=k.controller_port,
        log_dirs=_kafka_data(settings),
    )


def render_kafka_log4j(settings: Settings) -> str:
    return _render("kafka-log4j.properties.tmpl", log_file=kafka_server_log(settings))


def render_opensearch_config(settings: Settings) -> str:
    return _render("opensearch.yml.tmpl", transport_port=settings.stack.opensearch.transport_port)


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def pom_version(name: str) -> str:
    """The version a pom pins (kafka.version / opensearch.runner.version), shown before anything runs."""
    prop = "kafka.version" if name == KAFKA else "opensearch.runner.version"
    m = re.search(rf"<{re.escape(prop)}>([^<]+)</", _pom(name).read_text(encoding="utf-8"))
    if not m:
        return "unknown"
    version = m.group(1).strip()
    # codelibs' runner appends its own build number to the OpenSearch version: 2.19.1.0 runs 2.19.1.
    return ".".join(version.split(".")[:3]) if name == OPENSEARCH else version


def kafka_address(settings: Settings) -> str:
    return f"{LOCALHOST}:{settings.stack.kafka.port}"


def search_address(settings: Settings) -> str:
    return f"http://{LOCALHOST}:{settings.stack.opensearch.http_port}"


def _first_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return (host.strip("[]") or LOCALHOST), int(port or 9092)


# ------------------------------------------------------------------------------------------------ classpath


def classpath(settings: Settings, name: str) -> str:
    """The component's classpath, cached next to its data; re-resolved only if the pom (or a jar) changed."""
    if cached := cached_classpath(settings, name):
        return cached
    with _maven_lock:
        if cached := cached_classpath(settings, name):
            return cached  # (maybe resolved by another thread while we waited)
        cdir = component_dir(settings, name)
        cdir.mkdir(parents=True, exist_ok=True)
        _resolve_classpath(settings, _pom(name), cdir / "classpath.txt")
        (cdir / "classpath.key").write_text(_pom_key(name) + "\n")
        return (cdir / "classpath.txt").read_text(encoding="utf-8").strip()


def _pom_key(name: str) -> str:
    return hashlib.sha256(_pom(name).read_bytes()).hexdigest()


def cached_classpath(settings: Settings, name: str) -> str | None:
    """The cached classpath if it was resolved from the current pom and every jar is still in ~/.m2."""
    cdir = component_dir(settings, name)
    cp_file, key_file = cdir / "classpath.txt", cdir / "classpath.key"
    if not (cp_file.exists() and key_file.exists()) or key_file.read_text().strip() != _pom_key(name):
        return None
    cp = cp_file.read_text(encoding="utf-8").strip()
    return cp if cp and all(Path(jar).exists() for jar in cp.split(os.pathsep)) else None


def _resolve_classpath(settings: Settings, pom: Path, out: Path) -> None:
    """Ask Maven for the classpath: offline first (instant with a warm ~/.m2), then online."""
    mvn = shutil.which(settings.stack.maven)
    if mvn is None:
        raise StackError(
            f"Maven not found ({settings.stack.maven!r}): install Maven 3 or set stack.maven "
            "(NEWSFLOW_STACK__MAVEN)"
        )
    base = [mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={out}"]
    result = None
    for cmd in ([*base[:3], "-o", *base[3:]], base):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"Maven timed out resolving {pom.name} (Maven Central unreachable?)") from None
        if result.returncode == 0 and out.exists():
            return
    assert result is not None
    lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if "[ERROR]" in ln]
    reason = _shorten(lines[0].replace("[ERROR]", "").strip() if lines else f"exit code {result.returncode}")
    raise StackError(f"Maven could not resolve {pom.relative_to(PROJECT_ROOT)} (offline?): {reason}")


def _java(settings: Settings) -> str:
    java = shutil.which(settings.stack.java)
    if java is None:
        raise StackError(
            f"Java not found ({settings.stack.java!r}): install a JDK 17+ or set stack.java "
            "(NEWSFLOW_STACK__JAVA)"
        )
    return java


# ------------------------------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _markers(settings: Settings, name: str) -> list[str]:
    """cmdline parts proving a pid is *this* state dir's component, not a recycled pid or another checkout."""
    if name == KAFKA:
        return [KAFKA_MAIN, str(_kafka_props(settings))]
    return [OPENSEARCH_MAIN, str(component_dir(settings, OPENSEARCH))]


def is_ours(pid: int, markers: list[str]) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and all(m in argv for m in markers)


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (also used for heartbeats by `newsflow status`)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(settings: Settings, name: str) -> int | None:
    """Our live process for `name`, or None: the pid file must exist and its pid's cmdline must match."""
    pid = read_pid(pid_file(settings, name))
    if pid is None or not pid_alive(pid) or not is_ours(pid, _markers(settings, name)):
        return None
    return pid


def _spawn(settings: Settings, name: str, cmd: list[str]) -> int:
    """Start detached (own session, so Ctrl-C on the CLI never reaches it), output appended to console.log."""
    cdir = component_dir(settings, name)
    with console_log(settings, name).open("ab") as out:
        out.write(f"\n=== newsflow stack: starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    tmp = pid_file(settings, name).with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_file(settings, name))
    return proc.pid


@contextlib.contextmanager
def _exclusive(settings: Settings, name: str, echo: Echo) -> Iterator[None]:
    """Serialise start/stop of one component across processes (tests, `make run` and a shell may race)."""
    path = component_dir(settings, name) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"{name}: another newsflow process is starting or stopping it; waiting ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ------------------------------------------------------------------------------------------------------ ports


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        return s.connect_ex((host, port)) == 0


def port_free(port: int, host: str = LOCALHOST) -> bool:
    """Can we bind it? SO_REUSEADDR so a TIME_WAIT left by our own last run does not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def port_owner(port: int) -> str | None:
    """Best effort "pid 123 (python3 -m http.server)" for a listening port, from /proc/net/tcp*."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    argv = " ".join(_cmdline(int(proc.name)))
                    return f"pid {proc.name} ({_shorten(argv, 80)})"
            except OSError:
                continue
    return None


def _ports(settings: Settings, name: str) -> list[tuple[str, int]]:
    if name == KAFKA:
        k = settings.stack.kafka
        return [("stack.kafka.port", k.port), ("stack.kafka.controller_port", k.controller_port)]
    o = settings.stack.opensearch
    return [
        ("stack.opensearch.http_port", o.http_port),
        ("stack.opensearch.transport_port", o.transport_port),
    ]


def check_ports(settings: Settings, name: str) -> None:
    """Fail with one clear line if something else holds a port we need (the runner would silently move on)."""
    for setting, port in _ports(settings, name):
        if not port_free(port):
            owner = port_owner(port)
            by = f" by {owner}" if owner else " by another process"
            raise StackError(
                f"{name}: port {port} on {LOCALHOST} is already taken{by} and it is not a healthy {name} "
                f"we can use; stop it or set {setting} (NEWSFLOW_{setting.upper().replace('.', '__')})"
            )


# ------------------------------------------------------------------------------------------------------ logs


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(path: Path, since: int = 0, max_bytes: int = 256 * 1024) -> list[str]:
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


def _failure_hint(logs: list[tuple[Path, int]]) -> str:
    """`<line> (log: <path>)`: an error from any log written since this start, else a last line."""
    tails = [(path, _tail(path, since)) for path, since in logs]
    for path, lines in tails:
        if line := error_line(lines):
            return f"{_shorten(line)} (log: {path})"
    for path, lines in tails:
        if line := meaningful_line(lines):
            return f"{_shorten(line)} (log: {path})"
    return f"no output (log: {logs[0][0]})"


def _log_offsets(settings: Settings, name: str) -> list[tuple[Path, int]]:
    if name == KAFKA:
        paths = [kafka_server_log(settings), console_log(settings, KAFKA)]
    else:
        node_logs = component_dir(settings, OPENSEARCH) / "node_1" / "logs"
        paths = [console_log(settings, name), node_logs / f"{settings.stack.opensearch.cluster_name}.log"]
    return [(p, p.stat().st_size if p.exists() else 0) for p in paths]


# ---------------------------------------------------------------------------------------------------- health


class _QuietKafka(logging.Filter):
    """Drop kafka-python's connection chatter from threads that are probing (a broker that is starting up)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


_kafka_logger = logging.getLogger("kafka")
if not any(isinstance(f, _QuietKafka) for f in _kafka_logger.filters):
    _kafka_logger.addFilter(_QuietKafka())


def _admin_client(bootstrap: str, timeout_s: float) -> Any:
    """Admin client with short timeouts (kafka-python 2.x and 3.x name the bootstrap timeout differently)."""
    from kafka import KafkaAdminClient

    wanted = {
        "bootstrap_servers": bootstrap,
        "client_id": "newsflow-stack",
        "request_timeout_ms": int(timeout_s * 1000),
        "bootstrap_timeout_ms": int(timeout_s * 1000),  # 3.x
        "api_version_auto_timeout_ms": int(timeout_s * 1000),  # 2.x
    }
    known = KafkaAdminClient.DEFAULT_CONFIG
    return KafkaAdminClient(**{k: v for k, v in wanted.items() if k in known})


def _broker_version(admin: Any, broker: dict[str, Any]) -> str | None:
    """What the client learned from ApiVersions (3.x: the broker's minor; 2.x: the newest API it knows)."""
    try:
        if hasattr(admin, "get_broker_version_data"):
            node = broker.get("node_id", broker.get("broker_id"))
            return f"kafka {admin.get_broker_version_data(node).broker_version_str} (from API)"
        api = admin.config.get("api_version")
        return f"kafka >= {'.'.join(map(str, api))} (from API)" if api else None
    except Exception:  # the version is decoration; never fail health on it
        return None


def _topic_ready(admin: Any, topic: str) -> bool:
    try:
        described = admin.describe_topics([topic])
    except Exception:  # 2.x raises UnknownTopicOrPartitionError, 3.x may return the error code
        return False
    partitions = [p for t in described if t.get("topic") == topic for p in t.get("partitions", [])]
    return bool(partitions) and all(p.get("leader", -1) >= 0 for p in partitions)


def probe_kafka(bootstrap: str, *, create_topic: bool = True, timeout_s: float = 5.0) -> _Probe:
    """Healthy = metadata answers and (if asked) the controller creates a probe topic and elects a leader."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    host, port = _first_bootstrap(bootstrap)
    if not port_open(host, port):
        return _Probe(False, f"nothing listening on {host}:{port}")
    _quiet.on = True
    try:
        admin = _admin_client(bootstrap, timeout_s)
        try:
            cluster = admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            if not brokers:
                return _Probe(False, "no brokers in metadata yet")
            if create_topic:
                if not _topic_ready(admin, PROBE_TOPIC):
                    with contextlib.suppress(TopicAlreadyExistsError):
                        admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)], timeout_ms=int(timeout_s * 1000))
                if not _topic_ready(admin, PROBE_TOPIC):
                    return _Probe(False, f"topic {PROBE_TOPIC} has no leader yet")
            detail = f"{len(brokers)} broker(s), controller {cluster.get('controller_id')}"
            return _Probe(True, detail, _broker_version(admin, brokers[0]))
        finally:
            admin.close()
    except Exception as exc:
        return _Probe(False, _shorten(f"{type(exc).__name__}: {exc}", 160))
    finally:
        _quiet.on = False


def _search_client(settings: Settings, url: str, timeout_s: float) -> httpx.Client:
    s = settings.search
    auth = (s.username, s.password or "") if s.username else None
    return httpx.Client(base_url=url, auth=auth, verify=s.verify_certs, timeout=timeout_s)


def probe_search(settings: Settings, url: str, *, timeout_s: float = 5.0) -> _Probe:
    """Healthy = `GET /_cluster/health` says yellow or green; the version comes from `GET /`."""
    try:
        with _search_client(settings, url, timeout_s) as client:
            root = client.get("/")
            root.raise_for_status()
            info = root.json().get("version", {})
            version = f"{info.get('distribution', 'elasticsearch')} {info.get('number', '?')}"
            health = client.get("/_cluster/health")
            health.raise_for_status()
            status = health.json().get("status", "unknown")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return _Probe(False, _shorten(f"{type(exc).__name__}: {exc}", 160))
    return _Probe(status in ("yellow", "green"), f"cluster {status}", version)


def _probe_ours(settings: Settings, name: str, timeout_s: float = 5.0) -> _Probe:
    if name == KAFKA:
        return probe_kafka(kafka_address(settings), timeout_s=timeout_s)
    return probe_search(settings, search_address(settings), timeout_s=timeout_s)


def _probe_configured(settings: Settings, name: str, timeout_s: float = 5.0) -> _Probe:
    if name == KAFKA:
        return probe_kafka(settings.kafka.bootstrap_servers, create_topic=False, timeout_s=timeout_s)
    return probe_search(settings, settings.search.url, timeout_s=timeout_s)


def _configured_address(settings: Settings, name: str) -> str:
    return settings.kafka.bootstrap_servers if name == KAFKA else settings.search.url


def _managed_address(settings: Settings, name: str) -> str:
    return kafka_address(settings) if name == KAFKA else search_address(settings)


def _points_at_stack(settings: Settings, name: str) -> bool:
    """Do the client settings address the stack we would start? (If not, starting ours helps nobody.)"""
    if name == KAFKA:
        host, port = _first_bootstrap(settings.kafka.bootstrap_servers)
        wanted = settings.stack.kafka.port
    else:
        parts = urlsplit(settings.search.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        wanted = settings.stack.opensearch.http_port
    return port == wanted and host in (LOCALHOST, "localhost", "::1", "0.0.0.0")


# ---------------------------------------------------------------------------------------------------- start


def _jvm_heap(heap: str) -> list[str]:
    return [f"-Xms{heap}", f"-Xmx{heap}"]


def kafka_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints (base64url of a v4 UUID), without paying for a JVM start."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _prepare_kafka(settings: Settings, java: str, cp: str) -> list[str]:
    """Write the configs, format the KRaft storage once, and return the broker command line."""
    _write_if_changed(_kafka_props(settings), render_kafka_config(settings))
    _write_if_changed(_kafka_log4j(settings), render_kafka_log4j(settings))
    log4j = f"-Dlog4j.configuration=file:{_kafka_log4j(settings)}"
    if not (_kafka_data(settings) / "meta.properties").exists():
        _kafka_data(settings).mkdir(parents=True, exist_ok=True)
        fmt = [java, "-Xmx256m", log4j, "-cp", cp, "kafka.tools.StorageTool", "format"]
        fmt += ["-t", kafka_cluster_id(), "-c", str(_kafka_props(settings)), "--ignore-formatted"]
        result = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            line = (
                meaningful_line((result.stdout + result.stderr).splitlines()) or f"exit {result.returncode}"
            )
            raise StackError(
                f"kafka: formatting the storage in {_kafka_data(settings)} failed: {_shorten(line)}"
            )
    jvm = [*_jvm_heap(settings.stack.kafka.heap), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    jvm += ["-Djava.awt.headless=true", log4j]
    return [java, *jvm, "-cp", cp, KAFKA_MAIN, str(_kafka_props(settings))]


def _prepare_opensearch(settings: Settings, java: str, cp: str) -> list[str]:
    """Write opensearch.yml (pins the transport port, single-node discovery) and return the runner command."""
    o = settings.stack.opensearch
    _write_if_changed(_opensearch_yml(settings), render_opensearch_config(settings))
    base = component_dir(settings, OPENSEARCH)
    jvm = [*_jvm_heap(o.heap), "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8"]
    # The runner serves HTTP on baseHttpPort + node number (node 1); it never deletes basePath on shutdown.
    args = ["-basePath", str(base), "-numOfNode", "1", "-baseHttpPort", str(o.http_port - 1)]
    args += ["-clusterName", o.cluster_name]
    return [java, *jvm, "-cp", cp, OPENSEARCH_MAIN, *args]


def _launch(settings: Settings, name: str, echo: Echo) -> tuple[int, list[tuple[Path, int]]]:
    java = _java(settings)
    cp = classpath(settings, name)
    version = pom_version(name)
    echo(f"{name}: starting {version} on {_managed_address(settings, name)} ...")
    cmd = _prepare_kafka(settings, java, cp) if name == KAFKA else _prepare_opensearch(settings, java, cp)
    check_ports(settings, name)  # again, right before binding: the format step took a moment
    offsets = _log_offsets(settings, name)
    return _spawn(settings, name, cmd), offsets


def _wait_healthy(
    settings: Settings, name: str, pid: int, logs: list[tuple[Path, int]], started: float
) -> _Probe:
    deadline = started + settings.stack.start_timeout_s
    while True:
        if not pid_alive(pid):
            raise StackError(f"{name} exited during startup: {_failure_hint(logs)}")
        result = _probe_ours(settings, name, timeout_s=3.0)
        if result.healthy:
            return result
        if time.monotonic() > deadline:
            raise StackError(
                f"{name} (pid {pid}) not healthy after {settings.stack.start_timeout_s:.0f} s "
                f"({result.detail}); last log line: {_failure_hint(logs)}"
            )
        time.sleep(0.5)


def _bring_up(settings: Settings, name: str, echo: Echo) -> None:
    """Make one component healthy: reuse ours, else use an external one, else start ours and wait."""
    started = time.monotonic()
    with _exclusive(settings, name, echo):
        _bring_up_locked(settings, name, echo, started)


def _bring_up_locked(settings: Settings, name: str, echo: Echo, started: float) -> None:
    pid = running_pid(settings, name)
    if pid is not None:
        result = _probe_ours(settings, name)
        if not result.healthy:
            echo(f"{name}: running (pid {pid}) but not healthy yet ({result.detail}); waiting ...")
            result = _wait_healthy(settings, name, pid, _log_offsets(settings, name), started)
        where = _managed_address(settings, name)
        echo(f"{name}: already running (pid {pid}), {_managed_version(name, result)} on {where}, healthy")
        return
    external = _probe_configured(settings, name, timeout_s=3.0)
    if external.healthy:
        echo(
            f"{name}: using {external.version or name} already at {_configured_address(settings, name)} "
            "(not started by newsflow; left alone by `stack down`)"
        )
        return
    if not _points_at_stack(settings, name):
        echo(
            f"{name}: warning: the configured address {_configured_address(settings, name)} is not the local "
            f"stack's {_managed_address(settings, name)}; starting the local one anyway"
        )
    check_ports(settings, name)
    new_pid, logs = _launch(settings, name, echo)
    _wait_healthy(settings, name, new_pid, logs, started)
    echo(f"{name}: healthy after {time.monotonic() - started:.1f} s (pid {new_pid})")


def _in_parallel(
    settings: Settings, names: tuple[str, ...], fn: Callable[[Settings, str, Echo], None], echo: Echo
) -> None:
    """Run `fn` per component in threads; echo is serialised; all failures end up in one StackError line."""
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            echo(line)

    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack") as pool:
        futures = [pool.submit(fn, settings, name, say) for name in names]
    failures = [f.exception() for f in futures if f.exception() is not None]
    for exc in failures:
        if not isinstance(exc, StackError):
            raise exc  # type: ignore[misc]  # a bug, not a user-facing problem: keep the traceback
    if failures:
        raise StackError("; ".join(dict.fromkeys(str(e) for e in failures)))  # same cause once


def up(settings: Settings, *, echo: Echo = print) -> None:
    """Start (or reuse) Kafka and OpenSearch in parallel and return once both are healthy."""
    started = time.monotonic()
    settings.stack.state_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(settings, OPENSEARCH) is None and cached_classpath(settings, OPENSEARCH) is None:
        # Cold: OpenSearch boots slowest, so it gets Maven first; Kafka's resolve then overlaps its boot.
        echo("stack: resolving jars with Maven (first run only) ...")
        classpath(settings, OPENSEARCH)
    _in_parallel(settings, COMPONENTS, _bring_up, echo)
    echo(f"stack: up in {time.monotonic() - started:.1f} s (state in {settings.stack.state_dir})")


def start_component(settings: Settings, name: str, *, echo: Echo | None = None) -> None:
    """Start one component on its existing data (tests restart Kafka or OpenSearch mid-stream)."""
    _check_name(name)
    settings.stack.state_dir.mkdir(parents=True, exist_ok=True)
    _bring_up(settings, name, echo or log.info)


def ensure_up(settings: Settings, *, echo: Echo | None = None) -> None:
    """Cheap when everything is already healthy; otherwise `up` with progress on stderr."""
    if all(s.healthy for s in status(settings)):
        return
    up(settings, echo=echo or (lambda line: print(line, file=sys.stderr)))


# ----------------------------------------------------------------------------------------------------- stop


def stop_component(settings: Settings, name: str, *, echo: Echo | None = None) -> bool:
    """SIGTERM our process, SIGKILL after `stop_timeout_s`; True if one was stopped. Never touches others."""
    _check_name(name)
    say = echo or log.info
    with _exclusive(settings, name, say):
        return _stop_locked(settings, name, say)


def _stop_locked(settings: Settings, name: str, say: Echo) -> bool:
    path = pid_file(settings, name)
    pid = running_pid(settings, name)
    if pid is None:
        if path.exists():
            path.unlink(missing_ok=True)  # stale: the process is gone or the pid now belongs to someone else
        return False
    started = time.monotonic()
    if name == OPENSEARCH:
        _flush_search(settings)
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, settings.stack.stop_timeout_s):
        say(f"{name}: pid {pid} ignored SIGTERM for {settings.stack.stop_timeout_s:.0f} s; sending SIGKILL")
        if is_ours(pid, _markers(settings, name)):
            os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 10.0):
            raise StackError(f"{name}: pid {pid} survived SIGKILL; check `ps -p {pid}`")
    _children.pop(pid, None)
    path.unlink(missing_ok=True)
    say(f"{name}: stopped (pid {pid}) in {time.monotonic() - started:.1f} s")
    return True


def _flush_search(settings: Settings) -> None:
    """Commit every index before SIGTERM: the runner's shutdown hook exits without a final Lucene commit, so
    a restart would otherwise replay the (fsynced) translog. Best effort: a failed flush loses nothing."""
    try:
        with _search_client(settings, search_address(settings), 15.0) as client:
            client.post("/_flush")
    except httpx.HTTPError as exc:
        log.debug("flush before stop failed: %s", exc)


def _take_down(settings: Settings, name: str, echo: Echo) -> None:
    if not stop_component(settings, name, echo=echo):
        ext = _probe_configured(settings, name, timeout_s=2.0)
        note = (
            f" (the one at {_configured_address(settings, name)} is not ours; left running)"
            if ext.healthy
            else ""
        )
        echo(f"{name}: not running{note}")


def down(settings: Settings, *, echo: Echo = print) -> None:
    """Stop our Kafka and OpenSearch (in parallel); idempotent, and external services are left alone."""
    _in_parallel(settings, COMPONENTS, _take_down, echo)


# ---------------------------------------------------------------------------------------------------- status


def _managed_version(name: str, result: _Probe) -> str:
    """Ours: Kafka's exact version is the pinned jar's (the API only tells 3.9); OpenSearch's from `GET /`."""
    if name == KAFKA:
        return pom_version(KAFKA)
    return result.version or f"opensearch {pom_version(OPENSEARCH)}"


def _component_status(settings: Settings, name: str) -> ComponentStatus:
    pid = running_pid(settings, name)
    if pid is not None:
        result = _probe_ours(settings, name, timeout_s=3.0)
        version = _managed_version(name, result)
        detail = (
            f"pid {pid}, {result.detail}" if result.healthy else f"pid {pid}, not healthy: {result.detail}"
        )
        return ComponentStatus(
            name, True, pid, version, _managed_address(settings, name), result.healthy, detail
        )
    result = _probe_configured(settings, name, timeout_s=3.0)
    address = _configured_address(settings, name)
    if result.healthy:
        return ComponentStatus(name, False, None, result.version, address, True, f"external, {result.detail}")
    return ComponentStatus(name, False, None, None, address, False, f"not running ({result.detail})")


def status(settings: Settings) -> list[ComponentStatus]:
    """Both components, probed in parallel (a down Kafka costs a connect timeout, not a sequence of them)."""
    with ThreadPoolExecutor(max_workers=len(COMPONENTS), thread_name_prefix="stack-status") as pool:
        return list(pool.map(lambda n: _component_status(settings, n), COMPONENTS))


def format_status(statuses: list[ComponentStatus]) -> str:
    rows = [("COMPONENT", "STATE", "VERSION", "ADDRESS", "DETAIL")]
    for s in statuses:
        state = (
            ("healthy" if s.healthy else "unhealthy") if s.managed else ("external" if s.healthy else "down")
        )
        rows.append((s.name, state, s.version or "-", s.address, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip()
        for r in rows
    )


# ------------------------------------------------------------------------------------------------------- cli


def _check_name(name: str) -> None:
    if name not in COMPONENTS:
        raise StackError(f"unknown stack component {name!r}; expected one of {', '.join(COMPONENTS)}")


def cli(action: str, settings: Settings) -> int:
    """`newsflow stack up|down|status`: prints, returns the exit code (status: 0 only if all healthy)."""
    try:
        if action == "up":
            up(settings)
            print(format_status(status(settings)))
            return 0
        if action == "down":
            down(settings)
            return 0
        if action == "status":
            statuses = status(settings)
            print(format_status(statuses))
            return 0 if all(s.healthy for s in statuses) else 1
    except StackError as exc:
        print(f"newsflow stack {action}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"newsflow stack: unknown action {action!r} (expected up, down or status)", file=sys.stderr)
    return 2
