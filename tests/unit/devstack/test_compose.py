"""Static checks of the container setup (`Dockerfile`, `.dockerignore`, `docker-compose.yml`).

No Docker engine is needed: the files are parsed and their wiring is checked against the real CLI parser and
the real settings model, so a renamed command, setting or port breaks this test instead of the deployment.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from pipeline.cli import alerts as alerts_cli
from pipeline.cli import commands as cli
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The newsflow services and the CLI command each one runs (handler + the argv the compose file must give).
NEWSFLOW_SERVICES: dict[str, tuple[str, Any]] = {
    "index-setup": ("index", cli._index),
    "poller": ("poller", cli._poller),
    "worker": ("worker", cli._worker),
    "indexer": ("indexer", cli._indexer),
    "alerts": ("alerts", alerts_cli.cmd_alerts),
    "api": ("api", alerts_cli.cmd_api),
}
LONG_RUNNING = ("poller", "worker", "indexer", "alerts", "api")
EXPECTED_ENV = {
    "NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",
    "NEWSFLOW_SEARCH__URL": "http://elasticsearch:9200",
    "NEWSFLOW_SEARCH__BACKEND": "elasticsearch",
}
APP_DIR = "/app"


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd is not None, "service has no command"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def depends_of(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1]:]


def setting_path_is_known(env_name: str) -> bool:
    """Does NEWSFLOW_A__B__C name a real (nested) field of Settings? pydantic-settings silently ignores an
    unknown top-level NEWSFLOW_ variable, so the names are checked against the model here."""
    assert env_name.startswith("NEWSFLOW_")
    model: Any = Settings
    parts = env_name[len("NEWSFLOW_"):].lower().split("__")
    for i, part in enumerate(parts):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        if i == len(parts) - 1:
            return True
        # descend into a section model (also through `X | None`)
        candidates = [annotation, *typing.get_args(annotation)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return False


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    import os

    for key in list(os.environ):
        if key.startswith("NEWSFLOW_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def kafka_listeners(value: str) -> dict[str, tuple[str, int]]:
    """'PLAINTEXT://kafka:9092,CONTROLLER://:9093' -> {'PLAINTEXT': ('kafka', 9092), 'CONTROLLER': ('', 9093)}"""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        out[name] = host_port(address)
    return out


# ------------------------------------------------------------------------------------- the self-checks


def test_env_name_check_rejects_unknown_names() -> None:
    """The helper the wiring tests rely on must be able to say no."""
    assert setting_path_is_known("NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS")
    assert setting_path_is_known("NEWSFLOW_STACK__STATE_DIR")
    assert setting_path_is_known("NEWSFLOW_POLLER__SEEN_DB")
    assert not setting_path_is_known("NEWSFLOW_KAFKA__BOOTSTRAP_SERVER")
    assert not setting_path_is_known("NEWSFLOW_ELASTIC__URL")
    assert not setting_path_is_known("NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS__X")
    assert not setting_path_is_known("NEWSFLOW_FOO")  # pydantic-settings itself would ignore this one


# ---------------------------------------------------------------------------------- newsflow services


def test_newsflow_services_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == set(NEWSFLOW_SERVICES)
    images = set()
    for name in NEWSFLOW_SERVICES:
        build = services[name]["build"]
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (
            build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        assert (COMPOSE_FILE.parent / context).resolve() == ROOT, f"{name}: build context is not the project"
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, f"{name}: not built from ./Dockerfile"
        images.add(services[name].get("image"))
    assert len(images) == 1, f"newsflow services should share one image tag, got {images}"


def test_compose_uses_the_newsflow_anchor() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert re.search(r"^x-newsflow: &newsflow$", text, re.MULTILINE)
    for name in NEWSFLOW_SERVICES:
        assert re.search(rf"^  {re.escape(name)}:\n    <<: \*newsflow$", text, re.MULTILINE), name


@pytest.mark.parametrize("name", list(NEWSFLOW_SERVICES))
def test_command_is_a_real_newsflow_subcommand(services: dict[str, dict[str, Any]], name: str) -> None:
    argv = command_of(services[name])
    args = cli.build_parser().parse_args(argv)  # exits (SystemExit) on an unknown command or option
    command, handler = NEWSFLOW_SERVICES[name]
    assert args.command == command
    assert args.handler is handler
    if name == "index-setup":
        assert args.action == "setup"
    if name == "poller":
        assert not args.once, "the compose poller must keep polling, not run one cycle"
    if name == "alerts":
        assert args.action == "run", "the compose alerts service must run the alerting stage, not print the log"
    if name == "api":
        assert args.action == "serve"


def test_dockerfile_default_cmd_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    stage = final_stage(dockerfile_instructions())
    cmd = json.loads([args for word, args in stage if word == "CMD"][-1])
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(cmd)
    assert exit_info.value.code == 0
    assert "usage: newsflow" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(NEWSFLOW_SERVICES))
def test_env_maps_to_real_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services[name])
    newsflow_env = {k: v for k, v in env.items() if k.startswith("NEWSFLOW_")}
    unknown = [k for k in newsflow_env if not setting_path_is_known(k)]
    assert not unknown, f"{name}: environment names no setting: {unknown}"
    assert EXPECTED_ENV.items() <= newsflow_env.items()

    settings = settings_from_env(monkeypatch, newsflow_env)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.search.url == "http://elasticsearch:9200"
    assert settings.search.backend == "elasticsearch"
    assert str(settings.stack.state_dir) == "/data"


def test_dockerfile_env_maps_to_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {}
    for word, args in final_stage(dockerfile_instructions()):
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    newsflow_env = {k: v for k, v in env.items() if k.startswith("NEWSFLOW_")}
    assert newsflow_env, "the image should set its state dir"
    assert all(setting_path_is_known(k) for k in newsflow_env), newsflow_env
    assert str(settings_from_env(monkeypatch, newsflow_env).stack.state_dir) == "/data"


def test_bootstrap_servers_match_kafka_in_network_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka_env = env_of(services["kafka"])
    inter = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    advertised = kafka_listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    bound = kafka_listeners(kafka_env["KAFKA_LISTENERS"])
    kafka_names = {"kafka", services["kafka"].get("hostname", "kafka")}
    for name in NEWSFLOW_SERVICES:
        for server in env_of(services[name])["NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS"].split(","):
            host, port = host_port(server.strip())
            assert host in kafka_names, f"{name}: bootstrap host {host} is not the kafka service"
            assert (host, port) == advertised[inter], f"{name}: {server} is not kafka's in-network listener"
            assert bound[inter][1] == port, f"{name}: kafka does not listen on {port}"


def test_kafka_kraft_single_node_is_consistent(services: dict[str, dict[str, Any]]) -> None:
    import base64

    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.1"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    bound = kafka_listeners(env["KAFKA_LISTENERS"])
    advertised = kafka_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) <= set(protocols), "every listener needs a security protocol"
    assert set(advertised) <= set(bound), "advertised listeners must be bound listeners"
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert host_port(voter) == ("kafka", bound[controller][1])
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", key
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    # auto-created topics get the partition count newsflow creates its topics with (worker scaling)
    assert int(env["KAFKA_NUM_PARTITIONS"]) == Settings().kafka.partitions
    # the host listener is published on the same port it advertises, on localhost
    host_listeners = [n for n, (h, _) in advertised.items() if h in {"localhost", "127.0.0.1"}]
    assert len(host_listeners) == 1
    host_port_number = advertised[host_listeners[0]][1]
    assert bound[host_listeners[0]][1] == host_port_number
    published = [str(p).rsplit(":", 2)[-2:] for p in kafka.get("ports", [])]
    assert [str(host_port_number), str(host_port_number)] in published
    assert "/var/lib/kafka/data" in env["KAFKA_LOG_DIRS"]


def test_search_url_points_at_elasticsearch(services: dict[str, dict[str, Any]]) -> None:
    es = services["elasticsearch"]
    for name in NEWSFLOW_SERVICES:
        url = urlsplit(env_of(services[name])["NEWSFLOW_SEARCH__URL"])
        assert url.scheme == "http", "security is disabled: plain http"
        assert url.hostname == "elasticsearch" and url.hostname in services
        assert url.port == 9200
    env = env_of(es)
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"
    assert "-Xmx" in env["ES_JAVA_OPTS"]
    assert "9200" in " ".join(es["healthcheck"]["test"]) and "_cluster/health" in " ".join(es["healthcheck"]["test"])
    assert any(str(v).endswith(":/usr/share/elasticsearch/data") for v in es["volumes"])
    assert json.loads(env_of(services["kibana"])["ELASTICSEARCH_HOSTS"]) == ["http://elasticsearch:9200"]


def test_elastic_versions_match_each_other_and_the_client(services: dict[str, dict[str, Any]]) -> None:
    es_image, es_version = services["elasticsearch"]["image"].rsplit(":", 1)
    kb_image, kb_version = services["kibana"]["image"].rsplit(":", 1)
    assert es_image == "docker.elastic.co/elasticsearch/elasticsearch"
    assert kb_image == "docker.elastic.co/kibana/kibana"
    assert es_version == kb_version, "Kibana must run the same version as Elasticsearch"
    assert re.fullmatch(r"8\.15\.\d+", es_version)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    client = next(d for d in deps if re.match(r"elasticsearch\b", d))
    assert "<9" in client.replace(" ", ""), f"python client {client} may not speak to an 8.x server"
    assert "5601:5601" in " ".join(services["kibana"]["ports"])


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker
    # no named volume shared by replicas (each worker keeps its own data dir)
    assert not [v for v in worker.get("volumes", []) if not str(v).startswith(("./", "/"))]
    assert Settings().kafka.partitions >= 3, "`--scale worker=3` needs at least 3 partitions"


def test_alerts_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    alerts = services["alerts"]
    assert not {"container_name", "ports", "hostname"} & set(alerts)


def test_api_is_published_on_localhost_at_its_configured_port(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in env_of(services["api"]).items() if k.startswith("NEWSFLOW_")}
    api = settings_from_env(monkeypatch, env).api
    assert api.host == "0.0.0.0", "inside the container the API must listen beyond loopback"
    assert [str(p) for p in services["api"]["ports"]] == [f"127.0.0.1:{api.port}:{api.port}"]
    assert "NEWSFLOW_API__HOST" not in env_of(services["alerts"]), "only the API listens"


def test_depends_on_is_sound(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, condition in depends_of(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            if condition == "service_healthy":
                test = (services[dep].get("healthcheck") or {}).get("test")
                assert test and test != ["NONE"], f"{name} waits for {dep} to be healthy: it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} must be a one-shot to complete"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"
    for name in NEWSFLOW_SERVICES:
        deps = depends_of(services[name])
        assert deps.get("kafka") == "service_healthy", name
        assert deps.get("elasticsearch") == "service_healthy", name
    for name in LONG_RUNNING:
        assert depends_of(services[name]).get("index-setup") == "service_completed_successfully", name
    assert depends_of(services["kibana"]) == {"elasticsearch": "service_healthy"}


def test_volumes_and_config_mounts(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith(("./", "/", "~")):
                assert source in declared, f"{name}: named volume {source} is not declared"
    for name in NEWSFLOW_SERVICES:
        assert f"./config:{APP_DIR}/config:ro" in services[name]["volumes"], name
    state_dir = env_of(services["poller"])["NEWSFLOW_STACK__STATE_DIR"]
    poller_named = {str(v).split(":")[1] for v in services["poller"]["volumes"] if str(v).split(":")[0] in declared}
    assert state_dir in poller_named, "the poller's seen-state must live on a named volume"


# ------------------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_installs_the_project_and_runs_newsflow() -> None:
    instructions = dockerfile_instructions()
    stage = final_stage(instructions)
    assert stage[0] == ("FROM", "python:3.11-slim")
    entrypoint = [args for word, args in stage if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["newsflow"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["newsflow"] == "pipeline.cli:main"
    runs = " ".join(args for word, args in stage if word == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "the project itself must be pip-installed"
    # the model the tagger loads is the one checked at build time
    assert f"spacy.load('{Settings().entities.model}')" in runs
    users = [args for word, args in stage if word == "USER"]
    assert users and users[-1] not in {"root", "0"}, "must run as a non-root user"
    workdirs = [args for word, args in stage if word == "WORKDIR"]
    assert workdirs[-1] == APP_DIR, "settings find ./config relative to the working directory"
    copies = [args.split() for word, args in stage if word == "COPY"]
    assert ["config", "./config"] in copies or ["config/", "./config/"] in copies


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_local_state_out_but_not_what_is_copied() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv", ".newsflow", ".git", "tests", "pipeline/__pycache__", ".pytest_cache", ".mypy_cache"):
        assert _ignored(path, patterns), f"{path} should be in .dockerignore"
    for word, args in dockerfile_instructions():
        if word != "COPY" or args.startswith("--from"):
            continue
        sources = [s for s in args.split()[:-1] if not s.startswith("--")]
        for source in sources:
            if "*" in source:
                continue
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"
            assert not _ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    for needed in ("pipeline/resources/aliases.yaml", "pipeline/cli/commands.py", "pyproject.toml"):
        assert not _ignored(needed, patterns), needed
