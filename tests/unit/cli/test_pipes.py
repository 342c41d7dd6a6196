"""A reader that hangs up (`newsflow ... | head`) ends a command quietly: exit 141 (as a command killed by SIGPIPE),
nothing on stderr, no 'internal error', no 'Exception ignored'; an EPIPE from anything but stdout is still an
error. `newsflow run`'s stdout (`QuietStdout`) survives it too and says the reader is gone."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import commands as cli
from pipeline.devstack.supervisor import QuietStdout
from pipeline.settings import Settings
from tests.unit.cli.test_cli import _replace_handler, isolated  # noqa: F401  (the fixture, autouse)

ROOT = Path(__file__).resolve().parents[3]


def _big_feed(path: Path, items: int = 1500) -> Path:
    body = "".join(
        f"<item><title>Story {i}</title><link>https://news.example/{i}</link>"
        f"<description>{'Words of the report. ' * 10}</description></item>"
        for i in range(items)
    )
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{body}</channel></rss>')
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_")}


def test_feed_parse_into_head_ends_quietly(tmp_path: Path) -> None:
    feed = _big_feed(tmp_path / "big.xml")
    command = f"{sys.executable} -m pipeline feed parse {feed} | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60
    )
    assert done.stderr == "" and done.returncode == 141, done.stderr
    assert done.stdout.count("\n") == 1 and '"title": "Story 0"' in done.stdout


def test_a_reader_gone_before_the_first_line_ends_quietly(tmp_path: Path) -> None:
    """Small output, all of it buffered: the broken pipe shows at the final flush, still quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "feed", "parse", str(tmp_path / "missing.xml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader hangs up before the command wrote anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_an_epipe_that_is_not_stdout_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise BrokenPipeError(32, "Broken pipe")  # e.g. an SMTP server that hung up

    _replace_handler(monkeypatch, "status", handler)
    assert cli.main(["status"]) == 70
    assert "internal error: BrokenPipeError" in capsys.readouterr().err


def test_quiet_stdout_survives_a_closed_pipe_and_notices_it() -> None:
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), line_buffering=True)
    out = QuietStdout(stream)  # type: ignore[arg-type]
    out.say("first line")
    assert os.read(read_end, 100) == b"first line\n" and not out.reader_gone()
    os.close(read_end)
    assert out.reader_gone()  # seen without writing
    out.say("nobody reads this")  # no exception, ever again
    out.flush()
    assert out.closed_pipe
    stream.close()


def test_quiet_stdout_on_a_write_that_fails() -> None:
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), line_buffering=True)
    os.close(read_end)
    out = QuietStdout(stream)  # type: ignore[arg-type]
    out.say("x")
    assert out.closed_pipe
    stream.close()
