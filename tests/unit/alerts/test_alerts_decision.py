"""Alert decisions without services: who gets which alert for which article."""

from __future__ import annotations

from pipeline.alerts.decision import Logged, decide
from pipeline.alerts.models import dedup_key
from tests.unit.alerts.samples import enriched, sub


def test_first_original_report_claims_one_new_alert_per_matching_subscription() -> None:
    a, b = sub("a"), sub("b")
    actions = decide(enriched("a1", ["Harbor Times"]), [a, b], {}, update_after=3)
    assert [(x.op, x.alert.kind, x.alert.subscription_id) for x in actions] == [
        ("claim", "new", a.id),
        ("claim", "new", b.id),
    ]
    assert actions[0].alert.title == "Russian leader arrives in Pyongyang"
    assert actions[0].alert.dedup_key == dedup_key(a.id, "s-1", "new")


def test_duplicates_never_alert() -> None:
    copy = enriched("a3", ["Harbor Times", "Meridian Post"], duplicate_of="a1")
    assert decide(copy, [sub()], {}, update_after=1) == []


def test_later_report_refreshes_a_pending_alert_instead_of_a_second_one() -> None:
    s = sub()
    second = enriched("a2", ["Harbor Times", "Meridian Post"], rev=2)
    actions = decide(second, [s], {s.id: Logged("pending", 1)}, update_after=3)
    assert [(x.op, x.alert.kind) for x in actions] == [("refresh", "new")]
    assert actions[0].alert.sources == ["Harbor Times", "Meridian Post"]


def test_update_only_when_enough_new_sources_and_enabled() -> None:
    s = sub()
    four = enriched("a4", ["A", "B", "C", "D"], rev=4)
    assert decide(four, [s], {s.id: Logged("sent", 2)}, update_after=3) == []
    five = enriched("a5", ["A", "B", "C", "D", "E"], rev=5)
    assert [(x.op, x.alert.kind) for x in decide(five, [s], {s.id: Logged("sent", 2)}, update_after=3)] == [
        ("claim", "update")
    ]
    assert decide(five, [s], {s.id: Logged("sent", 2)}, update_after=0) == []
    quiet = sub(updates=False)
    assert decide(five, [quiet], {quiet.id: Logged("sent", 2)}, update_after=3) == []


def test_digest_subscriptions_collect_instead_of_claiming() -> None:
    daily = sub(frequency="daily")
    actions = decide(enriched("a1", ["A"]), [daily], {}, update_after=3)
    assert [(x.op, x.alert.subscription_id, x.alert.story_id) for x in actions] == [("collect", daily.id, "s-1")]
    five = enriched("a5", ["A", "B", "C", "D", "E"], rev=5)  # growth never turns a digest into an update alert
    assert [x.op for x in decide(five, [daily], {daily.id: Logged("sent", 1)}, update_after=3)] == ["collect"]
    copy = enriched("a3", ["A", "B"], duplicate_of="a1")
    assert decide(copy, [daily], {}, update_after=3) == []


def test_dedup_key_is_stable_and_bounded() -> None:
    assert dedup_key("s", "story", "new") == "s|story|new"
    long = dedup_key("s", "x" * 600, "new")
    assert len(long.encode()) <= 512 and long == dedup_key("s", "x" * 600, "new")
