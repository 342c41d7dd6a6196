"""Unit tests of the stack manager (`pipeline/devstack/`): config rendering, pid-file safety, port checks.
No JVM is started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devstack import common, kafka, logs, maven, opensearch, processes, stack
from pipeline.errors import ConfigError, StackError
from pipeline.settings import KafkaStack, OpenSearchStack, Settings, StackSettings, load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        stack=StackSettings(
            state_dir=tmp_path / "state",
            stop_timeout_s=5,
            kafka=KafkaStack(port=19092, controller_port=19093),
            opensearch=OpenSearchStack(http_port=9251, transport_port=19301, cluster_name="unit"),
        )
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port held by *this* process: something that is neither Kafka nor OpenSearch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _spawn_sleeper(*extra_args: str) -> subprocess.Popen[bytes]:
    """A harmless process whose argv contains `extra_args` (to impersonate, or not, a stack component)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra_args])


# ------------------------------------------------------------------------------------------- config rendering


def test_kafka_config_is_single_node_kraft_on_configured_ports(settings: Settings) -> None:
    text = kafka.render_kafka_config(settings)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(settings.stack.state_dir.resolve() / "kafka" / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["auto.create.topics.enable"] == "true"
    assert "$" not in text


def test_kafka_log4j_logs_to_a_file_in_the_state_dir(settings: Settings) -> None:
    text = kafka.render_kafka_log4j(settings)
    assert f"log4j.appender.file.File={kafka.kafka_server_log(settings)}" in text
    assert str(settings.stack.state_dir.resolve()) in text
    assert "%d" in text  # log4j's own pattern survived templating


def test_opensearch_config_pins_transport_port_and_single_node(settings: Settings) -> None:
    text = opensearch.render_opensearch_config(settings)
    assert "transport.port: 19301" in text
    assert "discovery.type: single-node" in text
    assert "network.host: 127.0.0.1" in text


def test_versions_come_from_the_poms() -> None:
    assert maven.pom_version("kafka") == "3.9.1"
    assert maven.pom_version("opensearch") == "2.19.1"


def test_kafka_cluster_id_looks_like_storage_tool_output() -> None:
    ids = {kafka.kafka_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_opensearch_http_port_above_runner_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http_port"):
        load_settings(stack={"opensearch": {"http_port": 9300}})


# ------------------------------------------------------------------------------------------- pid-file safety


def test_no_pid_file_means_not_running(settings: Settings) -> None:
    assert stack.running_pid(settings, "kafka") is None
    assert stack.stop_component(settings, "kafka") is False


def test_garbage_pid_file_is_ignored_and_cleaned(settings: Settings) -> None:
    path = common.pid_file(settings, "kafka")
    path.parent.mkdir(parents=True)
    path.write_text("not a pid\n")
    assert stack.running_pid(settings, "kafka") is None
    assert stack.stop_component(settings, "kafka") is False
    assert not path.exists()


def test_pid_of_an_unrelated_process_is_never_signalled(settings: Settings) -> None:
    other = _spawn_sleeper()  # alive, but its cmdline is not our Kafka's
    try:
        path = common.pid_file(settings, "kafka")
        path.parent.mkdir(parents=True)
        path.write_text(f"{other.pid}\n")
        assert stack.running_pid(settings, "kafka") is None
        assert stack.stop_component(settings, "kafka") is False
        assert other.poll() is None, "an unrelated process was killed"
        assert not path.exists(), "the stale pid file should be removed"
    finally:
        other.kill()
        other.wait()


def test_other_state_dirs_component_is_not_ours(settings: Settings, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other" / "kafka" / "server.properties"
    other = _spawn_sleeper(kafka.KAFKA_MAIN, str(elsewhere))
    try:
        path = common.pid_file(settings, "kafka")
        path.parent.mkdir(parents=True)
        path.write_text(f"{other.pid}\n")
        assert stack.running_pid(settings, "kafka") is None
        assert stack.stop_component(settings, "kafka") is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_our_process_is_found_and_stopped(settings: Settings) -> None:
    props = settings.stack.state_dir.resolve() / "kafka" / "server.properties"
    ours = _spawn_sleeper(kafka.KAFKA_MAIN, str(props))
    try:
        path = common.pid_file(settings, "kafka")
        path.parent.mkdir(parents=True)
        path.write_text(f"{ours.pid}\n")
        assert stack.running_pid(settings, "kafka") == ours.pid
        assert stack.stop_component(settings, "kafka") is True
        assert ours.wait(timeout=5) == -15  # SIGTERM
        assert not path.exists()
        assert stack.stop_component(settings, "kafka") is False  # idempotent
    finally:
        if ours.poll() is None:
            ours.kill()
            ours.wait()


def test_is_ours_needs_every_marker() -> None:
    me = os.getpid()
    assert not processes.is_ours(me, [kafka.KAFKA_MAIN])
    assert not processes.is_ours(2**22 + 12345, [])  # no such process: never ours


# ------------------------------------------------------------------------------------------------- ports


def test_taken_port_is_one_clear_line_naming_port_and_owner(
    settings: Settings, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    taken = settings.model_copy(
        update={
            "stack": settings.stack.model_copy(
                update={"kafka": KafkaStack(port=port, controller_port=_free_port())}
            )
        }
    )
    with pytest.raises(StackError) as err:
        stack.check_ports(taken, "kafka")
    message = str(err.value)
    assert "\n" not in message
    assert f"port {port}" in message
    assert f"pid {os.getpid()}" in message
    assert "stack.kafka.port" in message


def test_start_refuses_a_port_held_by_something_that_is_not_kafka(
    settings: Settings, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    taken = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"}),
            "stack": settings.stack.model_copy(
                update={"kafka": KafkaStack(port=port, controller_port=_free_port())}
            ),
        }
    )
    with pytest.raises(StackError, match=f"port {port} .* already taken"):
        stack.start_component(taken, "kafka")
    assert not common.pid_file(taken, "kafka").exists()


def test_free_port_is_free() -> None:
    assert processes.port_free(_free_port())


# -------------------------------------------------------------------------------------------- log digests


def test_error_line_prefers_the_exception_after_the_last_error() -> None:
    lines = [
        "[2025-01-01 00:00:00,000] INFO starting (kafka.server.KafkaRaftServer)",
        "[2025-01-01 00:00:01,000] ERROR [KafkaRaftServer nodeId=1] Fatal error during broker startup.",
        "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9092: in use.",
        "\tat kafka.network.Acceptor.openServerSocket(SocketServer.scala:734)",
        "[2025-01-01 00:00:02,000] INFO shutting down (kafka.server.KafkaRaftServer)",
    ]
    assert logs.error_line(lines) == lines[2]
    assert logs.meaningful_line(["=== newsflow stack: starting", "Closed all nodes."]) == "Closed all nodes."
    assert logs.meaningful_line([]) is None


def test_format_status_is_a_table() -> None:
    rows = [
        stack.ComponentStatus("kafka", True, 42, "3.9.1", "127.0.0.1:9092", True, "pid 42"),
        stack.ComponentStatus("opensearch", False, None, None, "http://127.0.0.1:9200", False, "not running"),
    ]
    text = stack.format_status(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["COMPONENT", "STATE", "VERSION"]
    assert lines[1].split()[:3] == ["kafka", "healthy", "3.9.1"]
    assert lines[2].split()[:3] == ["opensearch", "down", "-"]
    assert not rows[0].external and not rows[1].external


def test_cli_rejects_unknown_action(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.cli("restart", settings) == 2
    assert "unknown action" in capsys.readouterr().err


def test_pid_alive_is_false_for_zombies_gone_and_impossible_pids() -> None:
    assert processes.pid_alive(os.getpid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # not ours: nobody reaps it until wait()
    try:
        deadline = time.monotonic() + 10
        while processes.pid_alive(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes.pid_alive(zombie.pid)
        assert processes.cmdline(zombie.pid) == []
    finally:
        zombie.wait()
    for pid in (0, -5, 2**22 + 12345):
        assert not processes.pid_alive(pid)
        assert processes.cmdline(pid) == []
