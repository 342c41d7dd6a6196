"""Config input checked where it enters: a config file that is not UTF-8 (or not readable) is one line naming the
file and the byte, exit 2; a feed in feeds.yaml whose URL is not http(s) or does not parse is refused at load
(syntax only, no DNS), as are the same URLs given to `newsflow feeds import` in a YAML or OPML file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import settings as settings_mod
from pipeline.cli import commands as cli
from pipeline.cli.feeds import read_feed_file
from pipeline.errors import ConfigError
from pipeline.settings import FeedConfig, get_settings, load_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(settings_mod, "PROJECT_ROOT", tmp_path / "no-project")
    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)
    get_settings.cache_clear()
    yield work
    get_settings.cache_clear()


def test_a_config_file_that_is_not_utf8_is_one_line_naming_file_and_byte(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "config" / "newsflow.yaml"
    path.write_bytes(b"kafka:\n  partitions: 4  # caf\xe9\n")
    with pytest.raises(ConfigError, match=r"newsflow\.yaml is not UTF-8 text: byte 0xe9 at position 29 \(line 2\)"):
        load_settings()
    assert cli.main(["status"]) == 2  # what the user meets: no traceback, a config error's exit code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(path) in err and "position 29" in err
    assert not (workdir / ".newsflow" / "logs" / "crash.log").exists()


def test_a_feeds_file_that_is_not_utf8_and_an_unreadable_config_are_one_line(workdir: Path) -> None:
    (workdir / "config" / "feeds.yaml").write_bytes(b"\xff\xfefeeds: []\n")
    with pytest.raises(ConfigError, match=r"feeds\.yaml is not UTF-8 text: byte 0xff at position 0 \(line 1\)"):
        load_settings()
    (workdir / "config" / "feeds.yaml").unlink()
    (workdir / "config" / "newsflow.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read config file .*newsflow\.yaml: Is a directory"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("file:///etc/passwd", "only http and https are allowed"),
        ("gopher://example.com/1", "only http and https are allowed"),
        ("javascript:alert(1)", "only http and https are allowed"),
        ("http://[::1", "invalid feed URL 'http://[::1': Invalid IPv6 URL"),
        ("http://example.com:port/rss", "invalid feed URL"),
        ("https:///rss", "no host"),
    ],
)
def test_feeds_yaml_refuses_a_url_that_cannot_be_a_feed_at_load(workdir: Path, url: str, said: str) -> None:
    (workdir / "config" / "feeds.yaml").write_text(
        f'feeds:\n  - url: https://ok.example/rss\n  - {{url: "{url}", name: X}}\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid setting feeds.1.url: ") and said in message and "\n" not in message
    assert "Value error" not in message


def test_no_dns_at_config_load(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("config load must not resolve host names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    (workdir / "config" / "feeds.yaml").write_text("feeds:\n  - url: https://unresolvable.invalid/rss\n")
    assert [f.url for f in load_settings().feeds] == ["https://unresolvable.invalid/rss"]


def test_feeds_import_files_refuse_or_skip_what_cannot_be_a_feed(tmp_path: Path) -> None:
    yaml_file = tmp_path / "more.yaml"
    yaml_file.write_text('feeds:\n  - url: https://ok.example/rss\n  - url: "file:///etc/passwd"\n')
    with pytest.raises(ConfigError, match=r"more\.yaml: invalid feeds\.1\.url: refusing feed URL 'file:///etc/passwd'"):
        read_feed_file(yaml_file)
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<opml version="2.0"><body>'
        '<outline text="ok" xmlUrl="https://ok.example/rss"/>'
        '<outline text="js" xmlUrl="javascript:alert(1)"/>'
        '<outline text="v6" xmlUrl="http://[::1"/>'
        "</body></opml>"
    )
    skipped: list[str] = []
    assert [f.url for f in read_feed_file(opml, skipped)] == ["https://ok.example/rss"]
    assert len(skipped) == 2 and "only http and https" in skipped[0] and "invalid feed URL" in skipped[1]


def test_a_feed_config_is_checked_wherever_it_is_built() -> None:
    with pytest.raises(ValueError, match="only http and https"):
        FeedConfig(url="file:///etc/passwd")
    assert FeedConfig(url=" https://ok.example/rss").url == " https://ok.example/rss"  # accepted as written
