"""What a stage returns, and decoding one message with a readable reason for a dead letter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import first_problem
from pipeline.models import DeadLetter
from pipeline.stream import bus

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Output:
    """One record to produce."""

    topic: str
    key: bytes
    value: bytes | None


@dataclass
class StageResult:
    """A stage's answer for one batch: records to send, records to dead-letter, and how many it processed."""

    outputs: list[Output] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    processed: int = 0


def decode(raw: bytes | None, model: type[M]) -> M:
    """Decode one message; raises ValueError with a readable reason for anything that is not a `model` v1."""
    if not raw:
        raise ValueError("empty message")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        article = "an" if model.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"not {article} {model.__name__} v1: {where}: {problem}") from None


class Record(Protocol):
    """What the stages read of a Kafka record (kafka-python's `ConsumerRecord` has it)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


def dead_letter(stage: str, reason: str, record: Record) -> DeadLetter:
    """A dead letter keeping the record's exact bytes and where it was."""
    return bus.dead_letter(
        stage, reason, record.value, topic=record.topic, partition=record.partition, offset=record.offset
    )
