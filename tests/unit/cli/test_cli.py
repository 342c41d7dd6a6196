"""Unit tests of `pipeline/cli/commands.py`: every failure is one line on stderr, with the right exit code."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import __version__
from pipeline.cli import commands as cli
from pipeline.errors import ConfigError, StackError
from pipeline.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fresh settings per test with state in tmp_path, and no global logging changes."""
    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    monkeypatch.setenv("NEWSFLOW_STACK__STATE_DIR", str(state))
    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)
    get_settings.cache_clear()
    yield state
    get_settings.cache_clear()


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _replace_handler(monkeypatch: pytest.MonkeyPatch, command: str, handler: cli.Handler) -> None:
    """Point one sub-command at `handler` (set_defaults binds the handler when the parser is built)."""
    real = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = real()
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            if isinstance(action, argparse._SubParsersAction):
                action.choices[command].set_defaults(handler=handler)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"newsflow {__version__}"


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_cluster_with_missing_input_is_one_line_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexistent.jsonl"
    out = tmp_path / "out.jsonl"
    code = cli.main(["cluster", "--input", str(missing), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert _one_line(captured.err) == f"newsflow: error: cannot read {missing}: No such file or directory"
    assert captured.out == ""
    assert not out.exists()


def test_cluster_with_malformed_row_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "title": "fine"}\n{"id": "b", "title": \n', encoding="utf-8")
    code = cli.main(["cluster", "--input", str(src), "--output", str(tmp_path / "out.jsonl")])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert line.startswith(f"newsflow: error: {src}:2: not valid JSON")


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_search_query_is_a_query_error_before_connecting(
    query: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import report

    def no_connect(*_: object) -> None:
        raise AssertionError("an empty query must be rejected before connecting")

    monkeypatch.setattr(report, "connect", no_connect)
    code = cli.main(["search", query])
    assert code == 1
    assert _one_line(capsys.readouterr().err) == "newsflow: error: empty query: give some words to search for"


def test_newsflow_error_uses_its_exit_code(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise ConfigError("invalid setting kafka.partitions: bad")

    _replace_handler(monkeypatch, "status", handler)
    assert cli.main(["status"]) == 2
    assert _one_line(capsys.readouterr().err) == "newsflow: error: invalid setting kafka.partitions: bad"


def test_stack_error_exit_code_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise StackError("Kafka is not reachable at 127.0.0.1:9092")

    _replace_handler(monkeypatch, "indexer", handler)
    assert cli.main(["indexer"]) == 1
    assert _one_line(capsys.readouterr().err) == "newsflow: error: Kafka is not reachable at 127.0.0.1:9092"


def test_handler_return_value_is_the_exit_code(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, object] = {}

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        seen["state_dir"] = settings.stack.state_dir
        seen["size"] = args.size
        return 3

    _replace_handler(monkeypatch, "search", handler)
    assert cli.main(["search", "some", "words", "--size", "4"]) == 3
    assert seen == {"state_dir": Path.cwd() / "state", "size": 4}
    assert capsys.readouterr().err == ""


def test_bad_config_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEWSFLOW_KAFKA__PARTITIONS", "zero")
    code = cli.main(["cluster", "--input", str(tmp_path / "x"), "--output", str(tmp_path / "y")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("newsflow: error: invalid setting kafka.partitions:")
    assert "NEWSFLOW_KAFKA__PARTITIONS" in line


def test_keyboard_interrupt_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise KeyboardInterrupt

    _replace_handler(monkeypatch, "poller", handler)
    assert cli.main(["poller", "--once"]) == 130
    assert _one_line(capsys.readouterr().err) == "newsflow: interrupted"


def test_unexpected_exception_is_one_line_and_a_crash_log(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise RuntimeError("kaboom 42")

    _replace_handler(monkeypatch, "status", handler)
    code = cli.main(["status"])
    line = _one_line(capsys.readouterr().err)
    log = isolated / "logs" / "crash.log"
    assert code == 70
    assert line == f"newsflow: internal error: RuntimeError: kaboom 42 (traceback in {log})"
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: kaboom 42" in text
    assert "in handler" in text

    # a second crash appends, it does not overwrite
    assert cli.main(["status"]) == 70
    assert log.read_text(encoding="utf-8").count("RuntimeError: kaboom 42") == 2


def test_search_engine_connection_failure_is_a_plain_error(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           isolated: Path) -> None:
    import elastic_transport

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise elastic_transport.ConnectionError("Connection refused")

    _replace_handler(monkeypatch, "index", handler)
    assert cli.main(["index", "setup"]) == 1
    assert _one_line(capsys.readouterr().err) == (
        "newsflow: error: search engine not reachable (ConnectionError); is it running? "
        "try `newsflow stack status`"
    )
    assert not (isolated / "logs" / "crash.log").exists()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("file:///etc/passwd", "only http and https are allowed"),
        ("gopher://example.com/", "only http and https are allowed"),
        ("http://[::1", "invalid feed URL"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ],
)
def test_feeds_add_refuses_a_bad_url_at_the_door(url: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any Kafka contact: one line, exit 1, nothing written."""
    assert cli.main(["feeds", "add", url]) == 1
    assert said in _one_line(capsys.readouterr().err)
