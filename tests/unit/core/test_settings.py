"""Unit tests of `pipeline/settings.py`: defaults, YAML files, environment overrides and one-line ConfigErrors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import settings as settings_mod
from pipeline.errors import ConfigError
from pipeline.settings import Settings, config_dir, load_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, no NEWSFLOW_* variables, and no project config to fall back on."""
    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(settings_mod, "PROJECT_ROOT", tmp_path / "no-project")
    return work


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_without_any_config(workdir: Path) -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.partitions == 4
    assert s.kafka.topics.articles == "newsflow.articles.v1"
    assert s.kafka.topics.deadletter == "newsflow.deadletter.v1"
    assert s.search.url == "http://127.0.0.1:9200"
    assert s.search.backend == "auto"
    assert s.search.indices.articles == "newsflow-articles"
    assert s.poller.interval_s == 300.0
    assert s.feeds == []
    assert config_dir() == settings_mod.PROJECT_ROOT / "config"


def test_local_config_dir_is_used_when_present(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "worker:\n  app_id: from-local-dir\n")
    assert config_dir() == workdir / "config"
    assert load_settings().worker.app_id == "from-local-dir"


def test_default_state_dir_is_relative_to_current_directory(workdir: Path) -> None:
    assert load_settings().stack.state_dir == workdir / ".newsflow"


def test_explicit_relative_state_dir_is_made_absolute_against_cwd(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "stack:\n  state_dir: mystate\n")
    assert load_settings().stack.state_dir == workdir / "mystate"


def test_yaml_file_from_env_overrides_defaults(workdir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(
        tmp_path / "elsewhere" / "custom.yaml",
        "kafka:\n  partitions: 7\n  topics:\n    articles: my.articles\nsearch:\n  backend: opensearch\n",
    )
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    s = load_settings()
    assert s.kafka.partitions == 7
    assert s.kafka.topics.articles == "my.articles"
    assert s.kafka.topics.tagged == "newsflow.tagged.v1"  # untouched sibling keeps its default
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.search.backend == "opensearch"
    assert config_dir() == cfg.parent


def test_feeds_yaml_next_to_config_is_read(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "poller:\n  interval_s: 60\n")
    _write(
        tmp_path / "cfg" / "feeds.yaml",
        "feeds:\n"
        "  - url: https://a.example/rss\n    name: Alpha\n    tags: [world]\n"
        "  - url: https://b.example/atom\n    enabled: false\n",
    )
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    s = load_settings()
    assert s.poller.interval_s == 60
    assert [f.url for f in s.feeds] == ["https://a.example/rss", "https://b.example/atom"]
    assert s.feeds[0].name == "Alpha"
    assert s.feeds[0].tags == ["world"]
    assert s.feeds[0].enabled is True
    assert s.feeds[1].enabled is False


def test_feeds_in_main_file_win_over_feeds_yaml(workdir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "feeds:\n  - url: https://main.example/rss\n")
    _write(tmp_path / "cfg" / "feeds.yaml", "feeds:\n  - url: https://side.example/rss\n")
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    assert [f.url for f in load_settings().feeds] == ["https://main.example/rss"]


def test_feeds_yaml_with_all_feeds_commented_out_means_no_feeds(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "")
    _write(workdir / "config" / "feeds.yaml", "feeds:\n  # - url: https://a.example/rss\n")
    assert load_settings().feeds == []


def test_empty_config_file_means_defaults(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "# nothing set\n")
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    s = load_settings()
    assert s.kafka.partitions == 4
    assert s.feeds == []


def test_env_beats_the_file(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(
        tmp_path / "cfg" / "newsflow.yaml", "kafka:\n  bootstrap_servers: file-broker:9092\n  partitions: 2\n"
    )
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    monkeypatch.setenv("NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS", "env-broker:19092")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "env-broker:19092"
    assert s.kafka.partitions == 2  # the rest of the file's section survives the env override


def test_nested_env_override_without_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_SEARCH__INDICES__STORIES", "env-stories")
    monkeypatch.setenv("NEWSFLOW_POLLER__ALLOW_PRIVATE_HOSTS", '["127.0.0.1"]')
    s = load_settings()
    assert s.search.indices.stories == "env-stories"
    assert s.search.indices.articles == "newsflow-articles"
    assert s.poller.allow_private_hosts == ["127.0.0.1"]


def test_bad_value_names_key_and_env_var(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "kafka: {partitions: zero}\n")
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as info:
        load_settings()
    msg = str(info.value)
    assert "kafka.partitions" in msg
    assert "NEWSFLOW_KAFKA__PARTITIONS" in msg
    assert str(cfg) in msg
    assert "\n" not in msg
    assert info.value.exit_code == 2


def test_out_of_range_value_from_env_is_a_config_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_KAFKA__PARTITIONS", "0")
    with pytest.raises(ConfigError, match=r"invalid setting kafka\.partitions: .*NEWSFLOW_KAFKA__PARTITIONS"):
        load_settings()


def test_unknown_key_in_section_is_rejected_by_name(workdir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "kafka:\n  bootstrap_servrs: broker:9092\n")
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "kafka.bootstrap_servrs" in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


def test_unknown_top_level_section_is_rejected(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "kafak:\n  partitions: 3\n")
    with pytest.raises(ConfigError, match=r"invalid setting kafak:"):
        load_settings()


def test_invalid_yaml_names_the_line(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(
        tmp_path / "cfg" / "newsflow.yaml",
        "kafka:\n  partitions: 3\n    bootstrap_servers: x:1\nsearch:\n  url: http://x\n",
    )
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as info:
        load_settings()
    msg = str(info.value)
    assert f"config file {cfg} line 3 is not valid YAML" in msg
    assert "\n" not in msg


def test_non_mapping_top_level_is_rejected(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "cfg" / "newsflow.yaml", "- kafka\n- search\n")
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="must hold a mapping at the top level"):
        load_settings()


def test_non_mapping_feeds_file_is_rejected(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "")
    feeds = _write(workdir / "config" / "feeds.yaml", "just a string\n")
    with pytest.raises(ConfigError, match=f"config file {feeds} must hold a mapping"):
        load_settings()


def test_missing_explicit_config_file_is_a_clear_error(workdir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope" / "newsflow.yaml"
    monkeypatch.setenv("NEWSFLOW_CONFIG", str(missing))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == f"cannot read config file {missing}: No such file or directory"


def test_missing_explicit_path_argument_is_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")


def test_bad_feed_entry_names_its_index(workdir: Path) -> None:
    _write(workdir / "config" / "feeds.yaml", "feeds:\n  - url: https://ok.example/rss\n  - name: no url\n")
    with pytest.raises(ConfigError, match=r"invalid setting feeds\.1\.url: Field required"):
        load_settings()


def test_overrides_argument_wins_over_file(workdir: Path) -> None:
    _write(workdir / "config" / "newsflow.yaml", "worker:\n  app_id: from-file\n")
    s = load_settings(worker={"app_id": "from-override"})
    assert s.worker.app_id == "from-override"


def test_alerts_and_api_sections_from_file_and_env(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        workdir / "config" / "newsflow.yaml",
        "alerts:\n  smtp_port: 2525\n  attempts: 2\n"
        f"api:\n  port: 9000\n  keys: [{{owner: ann, sha256: {'a' * 64}}}]\n",
    )
    monkeypatch.setenv("NEWSFLOW_ALERTS__ATTEMPTS", "6")
    s = load_settings()
    assert (s.alerts.smtp_port, s.alerts.attempts, s.alerts.alerts_index) == (2525, 6, "newsflow-alerts")
    assert s.api.port == 9000 and [k.owner for k in s.api.keys] == ["ann"]
    monkeypatch.setenv("NEWSFLOW_ALERTS__SETLE_S", "2")
    with pytest.raises(ConfigError, match=r"^invalid setting alerts\.setle_s: Extra inputs are not permitted"):
        load_settings()
    monkeypatch.delenv("NEWSFLOW_ALERTS__SETLE_S")
    monkeypatch.setenv("NEWSFLOW_API__KEYS", '[{"owner": "ann", "sha256": "the-key-itself"}]')
    with pytest.raises(ConfigError, match=r"^invalid setting api\.keys\.0\.sha256: String should match"):
        load_settings()
