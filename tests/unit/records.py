"""A stand-in for kafka-python's ConsumerRecord in unit tests: the fields the stages and loops read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes | None
