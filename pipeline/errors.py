"""User-facing errors: each one is printed as a single line by the CLI, never as a traceback."""

from __future__ import annotations

from pydantic import ValidationError


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """The first problem pydantic found, as (dotted field path, message): a user gets one line, not a dump of
    every nested error. Each caller adds what the user needs to find it (file and line, setting, message kind)."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]


class NewsflowError(Exception):
    """An error whose message is meant for the person running newsflow."""

    exit_code = 1


class ConfigError(NewsflowError):
    """A config file or environment value is missing, malformed or out of range."""

    exit_code = 2


class StackError(NewsflowError):
    """The local Kafka/OpenSearch stack could not be started, reached or stopped."""


class FeedError(NewsflowError):
    """A feed could not be fetched or parsed."""


class QueryError(NewsflowError):
    """A search query or filter is malformed."""


class BadInputError(NewsflowError):
    """An input file row is malformed (the message names the line)."""


class ConflictError(NewsflowError):
    """A change lost a race with another change to the same thing (e.g. a subscription deleted meanwhile)."""
