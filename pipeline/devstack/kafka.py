"""The local single-node Kafka (KRaft): its config files, the one-time storage format, its command line, and
the health probe (also used on a Kafka we did not start, e.g. docker compose's, which we use as is).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from pipeline.devstack.common import KAFKA, LOCALHOST, Probe, component_dir, console_log, render, write_if_changed
from pipeline.devstack.logs import meaningful_line, shorten
from pipeline.devstack.processes import port_open
from pipeline.errors import StackError
from pipeline.settings import Settings

KAFKA_MAIN = "kafka.Kafka"
PROBE_TOPIC = "newsflow.stack.healthcheck"

_quiet = threading.local()


# --------------------------------------------------------------------------------------------- paths & config


def kafka_server_log(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "server.log"


def _props(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "server.properties"


def _log4j(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "log4j.properties"


def _data(settings: Settings) -> Path:
    return component_dir(settings, KAFKA) / "data"


def render_kafka_config(settings: Settings) -> str:
    k = settings.stack.kafka
    return render(
        "kafka-server.properties.tmpl",
        port=k.port,
        controller_port=k.controller_port,
        log_dirs=_data(settings),
    )


def render_kafka_log4j(settings: Settings) -> str:
    return render("kafka-log4j.properties.tmpl", log_file=kafka_server_log(settings))


def kafka_address(settings: Settings) -> str:
    return f"{LOCALHOST}:{settings.stack.kafka.port}"


def first_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return (host.strip("[]") or LOCALHOST), int(port or 9092)


def markers(settings: Settings) -> list[str]:
    """cmdline parts proving a pid is *this* state dir's Kafka, not a recycled pid or another checkout's."""
    return [KAFKA_MAIN, str(_props(settings))]


def ports(settings: Settings) -> list[tuple[str, int]]:
    k = settings.stack.kafka
    return [("stack.kafka.port", k.port), ("stack.kafka.controller_port", k.controller_port)]


def log_paths(settings: Settings) -> list[Path]:
    return [kafka_server_log(settings), console_log(settings, KAFKA)]


# ------------------------------------------------------------------------------------------------------ start


def kafka_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints (base64url of a v4 UUID), without paying for a JVM start."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def prepare(settings: Settings, java: str, cp: str) -> list[str]:
    """Write the configs, format the KRaft storage once, and return the broker command line."""
    write_if_changed(_props(settings), render_kafka_config(settings))
    write_if_changed(_log4j(settings), render_kafka_log4j(settings))
    log4j = f"-Dlog4j.configuration=file:{_log4j(settings)}"
    if not (_data(settings) / "meta.properties").exists():
        _data(settings).mkdir(parents=True, exist_ok=True)
        fmt = [java, "-Xmx256m", log4j, "-cp", cp, "kafka.tools.StorageTool", "format"]
        fmt += ["-t", kafka_cluster_id(), "-c", str(_props(settings)), "--ignore-formatted"]
        result = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            line = (
                meaningful_line((result.stdout + result.stderr).splitlines()) or f"exit {result.returncode}"
            )
            raise StackError(f"kafka: formatting the storage in {_data(settings)} failed: {shorten(line)}")
    heap = settings.stack.kafka.heap
    jvm = [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    jvm += ["-Djava.awt.headless=true", log4j]
    return [java, *jvm, "-cp", cp, KAFKA_MAIN, str(_props(settings))]


# ----------------------------------------------------------------------------------------------------- health


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


def probe_kafka(bootstrap: str, *, create_topic: bool = True, timeout_s: float = 5.0) -> Probe:
    """Healthy = metadata answers and (if asked) the controller creates a probe topic and elects a leader."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    host, port = first_bootstrap(bootstrap)
    if not port_open(host, port):
        return Probe(False, f"nothing listening on {host}:{port}")
    _quiet.on = True
    try:
        admin = _admin_client(bootstrap, timeout_s)
        try:
            cluster = admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            if not brokers:
                return Probe(False, "no brokers in metadata yet")
            if create_topic:
                if not _topic_ready(admin, PROBE_TOPIC):
                    with contextlib.suppress(TopicAlreadyExistsError):
                        admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)], timeout_ms=int(timeout_s * 1000))
                if not _topic_ready(admin, PROBE_TOPIC):
                    return Probe(False, f"topic {PROBE_TOPIC} has no leader yet")
            detail = f"{len(brokers)} broker(s), controller {cluster.get('controller_id')}"
            return Probe(True, detail, _broker_version(admin, brokers[0]))
        finally:
            admin.close()
    except Exception as exc:
        return Probe(False, shorten(f"{type(exc).__name__}: {exc}", 160))
    finally:
        _quiet.on = False


def probe_ours(settings: Settings, timeout_s: float) -> Probe:
    return probe_kafka(kafka_address(settings), timeout_s=timeout_s)


def probe_configured(settings: Settings, timeout_s: float) -> Probe:
    """The Kafka the clients are configured for (ours or not): metadata only, no probe topic created."""
    return probe_kafka(settings.kafka.bootstrap_servers, create_topic=False, timeout_s=timeout_s)
