"""The local single-node OpenSearch (codelibs' OpenSearchRunner): its config, its command line, the health
probe (also used on a search engine we did not start, which we use as is) and the flush before a stop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from pipeline.devstack.common import LOCALHOST, OPENSEARCH, Probe, component_dir, console_log, render, write_if_changed
from pipeline.devstack.logs import shorten
from pipeline.settings import Settings

log = logging.getLogger(__name__)

OPENSEARCH_MAIN = "org.codelibs.opensearch.runner.OpenSearchRunner"


# --------------------------------------------------------------------------------------------- paths & config


def _opensearch_yml(settings: Settings) -> Path:
    # The runner keeps node 1 under <basePath>/node_1 and reads config/opensearch.yml from there.
    return component_dir(settings, OPENSEARCH) / "node_1" / "config" / "opensearch.yml"


def render_opensearch_config(settings: Settings) -> str:
    return render("opensearch.yml.tmpl", transport_port=settings.stack.opensearch.transport_port)


def search_address(settings: Settings) -> str:
    return f"http://{LOCALHOST}:{settings.stack.opensearch.http_port}"


def markers(settings: Settings) -> list[str]:
    """cmdline parts proving a pid is *this* state dir's OpenSearch, not a recycled pid or another checkout's."""
    return [OPENSEARCH_MAIN, str(component_dir(settings, OPENSEARCH))]


def ports(settings: Settings) -> list[tuple[str, int]]:
    o = settings.stack.opensearch
    return [
        ("stack.opensearch.http_port", o.http_port),
        ("stack.opensearch.transport_port", o.transport_port),
    ]


def log_paths(settings: Settings) -> list[Path]:
    node_logs = component_dir(settings, OPENSEARCH) / "node_1" / "logs"
    return [console_log(settings, OPENSEARCH), node_logs / f"{settings.stack.opensearch.cluster_name}.log"]


def prepare(settings: Settings, java: str, cp: str) -> list[str]:
    """Write opensearch.yml (pins the transport port, single-node discovery) and return the runner command."""
    o = settings.stack.opensearch
    write_if_changed(_opensearch_yml(settings), render_opensearch_config(settings))
    base = component_dir(settings, OPENSEARCH)
    jvm = [f"-Xms{o.heap}", f"-Xmx{o.heap}", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8"]
    # The runner serves HTTP on baseHttpPort + node number (node 1); it never deletes basePath on shutdown.
    args = ["-basePath", str(base), "-numOfNode", "1", "-baseHttpPort", str(o.http_port - 1)]
    args += ["-clusterName", o.cluster_name]
    return [java, *jvm, "-cp", cp, OPENSEARCH_MAIN, *args]


# ----------------------------------------------------------------------------------------------------- health


def _search_client(settings: Settings, url: str, timeout_s: float) -> httpx.Client:
    s = settings.search
    auth = (s.username, s.password or "") if s.username else None
    return httpx.Client(base_url=url, auth=auth, verify=s.verify_certs, timeout=timeout_s)


def probe_search(settings: Settings, url: str, *, timeout_s: float = 5.0) -> Probe:
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
        return Probe(False, shorten(f"{type(exc).__name__}: {exc}", 160))
    return Probe(status in ("yellow", "green"), f"cluster {status}", version)


def probe_ours(settings: Settings, timeout_s: float) -> Probe:
    return probe_search(settings, search_address(settings), timeout_s=timeout_s)


def probe_configured(settings: Settings, timeout_s: float) -> Probe:
    """The search engine the clients are configured for (ours or not)."""
    return probe_search(settings, settings.search.url, timeout_s=timeout_s)


def flush(settings: Settings) -> None:
    """Commit every index before SIGTERM: the runner's shutdown hook exits without a final Lucene commit, so
    a restart would otherwise replay the (fsynced) translog. Best effort: a failed flush loses nothing."""
    try:
        with _search_client(settings, search_address(settings), 15.0) as client:
            client.post("/_flush")
    except httpx.HTTPError as exc:
        log.debug("flush before stop failed: %s", exc)
