"""Every worker dead letter keeps where its record was (topic, partition, offset) and its exact bytes: base64 when
they are not UTF-8, the very text when they are; also for an article the tagger crashed on, which decoded fine."""

from __future__ import annotations

import base64

from pipeline.settings import Settings
from pipeline.stream.assign import AssignStage
from pipeline.stream.state import ChangelogState
from pipeline.stream.tag import TagStage
from tests.unit.records import Rec
from tests.unit.stream.test_stream import FakeTagger, article


def test_tag_stage_dead_letters_keep_position_and_exact_bytes() -> None:
    poison = article("p", title="poison").model_dump_json(indent=1).encode()  # not how Article re-serialises
    batch = [
        Rec("t.articles", 3, 10, article("a").model_dump_json().encode()),
        Rec("t.articles", 3, 11, poison),
        Rec("t.articles", 2, 12, b'\xff\xfe{"id": 1}'),
    ]
    result = TagStage(Settings(), FakeTagger()).handle(batch)  # type: ignore[arg-type]
    by_offset = {d.offset: d for d in result.dead}
    crashed, undecodable = by_offset[11], by_offset[12]
    assert (crashed.topic, crashed.partition) == ("t.articles", 3)
    assert crashed.reason == "tagging failed: RuntimeError: model crashed"
    assert crashed.payload.encode() == poison and crashed.payload_base64 is None  # UTF-8: the text is exact
    assert (undecodable.topic, undecodable.partition) == ("t.articles", 2)
    assert base64.b64decode(undecodable.payload_base64 or "") == b'\xff\xfe{"id": 1}'
    assert undecodable.payload.startswith("\ufffd\ufffd")  # the readable view; the base64 is the truth


def test_assign_stage_dead_letters_keep_position_and_exact_bytes() -> None:
    stage = AssignStage(Settings())
    stage.bind(ChangelogState())
    result = stage.handle([Rec("t.tagged", 0, 7, b"\x00\xffnot tagged")])  # type: ignore[list-item]
    (dead,) = result.dead
    assert (dead.stage, dead.topic, dead.partition, dead.offset) == ("assign", "t.tagged", 0, 7)
    assert base64.b64decode(dead.payload_base64 or "") == b"\x00\xffnot tagged"
