"""Tools around the product: the local Kafka + OpenSearch, process supervision, the demo.

The local stack's public API (what the CLI, `newsflow status` and the tests use) is exposed here; the
modules behind it are internal: `stack` (up/down/status), `kafka`, `opensearch`, `maven`, `processes`,
`logs`, `common`.
"""

from pipeline.devstack.common import COMPONENTS
from pipeline.devstack.kafka import kafka_address
from pipeline.devstack.opensearch import search_address
from pipeline.devstack.processes import pid_alive, port_open
from pipeline.devstack.stack import (
    ComponentStatus,
    cli,
    down,
    ensure_up,
    format_status,
    running_pid,
    start_component,
    status,
    stop_component,
    up,
)

__all__ = [
    "COMPONENTS",
    "ComponentStatus",
    "cli",
    "down",
    "ensure_up",
    "format_status",
    "kafka_address",
    "pid_alive",
    "port_open",
    "running_pid",
    "search_address",
    "start_component",
    "status",
    "stop_component",
    "up",
]
