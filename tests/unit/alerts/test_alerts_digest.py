"""Digest periods and messages without services: which period a match belongs to, when a period is due, keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.alerts.messages import period_label, render
from pipeline.alerts.models import Digest, DigestItem, Subscription, WebhookChannel, digest_key
from pipeline.alerts.periods import cut, period_length, period_of
from pipeline.errors import ConfigError
from pipeline.settings import AlertSettings, load_settings

HOUR, DAY = 3600, 86_400
T = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def test_periods_align_to_clock_hours_and_utc_days() -> None:
    assert period_of(at(0.999), HOUR) == period_of(at(0), HOUR)
    assert (period_of(at(0.5), HOUR).start, period_of(at(0.5), HOUR).end) == (at(0), at(1))
    assert period_of(at(1), HOUR).start == at(1)  # the boundary belongs to the next period
    day = period_of(at(15.5), DAY)  # 23:30 UTC
    assert (day.start, day.end) == (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    local = at(0.5).astimezone(timezone(timedelta(hours=2)))  # the same instant in another zone: same period
    assert period_of(local, HOUR) == period_of(at(0.5), HOUR)


def test_a_period_is_due_only_grace_seconds_after_it_ends() -> None:
    grace = 10.0
    before = cut(at(1) + timedelta(seconds=9), HOUR, grace)
    assert before.period.start == at(-1)  # 08:00-09:00 is not due yet: the previous hour is the latest one
    due = cut(at(1) + timedelta(seconds=10), HOUR, grace)
    assert (due.period.start, due.period.end, due.until) == (at(0), at(1), at(1))
    assert cut(at(1.9), HOUR, grace) == due  # and stays the latest until the next one ends


def test_early_flush_takes_the_current_period_up_to_now() -> None:
    now = at(0.25)
    early = cut(now, HOUR, 10.0, early=True)
    assert (early.period.start, early.period.end, early.until) == (at(0), at(1), now)


def test_short_periods_from_settings_make_the_boundary_testable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_ALERTS__HOURLY_PERIOD_S", "2")
    alerts = load_settings().alerts
    assert period_length("hourly", alerts) == 2 and period_length("daily", alerts) == DAY
    assert cut(T + timedelta(seconds=4.5), 2, 0.5).period.start == T + timedelta(seconds=2)
    monkeypatch.setenv("NEWSFLOW_ALERTS__HOURLY_PERIOD_S", "0")
    with pytest.raises(ConfigError, match=r"alerts\.hourly_period_s"):
        load_settings()
    assert AlertSettings().hourly_period_s == HOUR


def test_digest_key_is_one_per_subscription_and_period() -> None:
    start = period_of(at(0.5), HOUR).start
    assert digest_key("sub-1", start) == "sub-1|digest|2026-11-20T08:00:00Z"
    assert digest_key("sub-1", start.astimezone(timezone(timedelta(hours=-5)))) == digest_key("sub-1", start)
    assert digest_key("sub-1", at(1)) != digest_key("sub-1", start) != digest_key("sub-2", start)


def digest() -> tuple[Digest, Subscription]:
    sub = Subscription(name="korea", owner="ann", frequency="hourly", channels=[WebhookChannel(url="http://x")])
    items = [
        DigestItem(
            story_id="s-1",
            title="Putin lands in Pyongyang",
            sources=["Harbor Times", "Meridian Post"],
            matched_at=at(0.1),
        ),
        DigestItem(story_id="s-2", title="Missile test <off the coast>", sources=["Harbor Times"], matched_at=at(0.2)),
    ]
    return Digest(subscription_id=sub.id, frequency="hourly", period_start=at(0), period_end=at(1), items=items), sub


def test_a_digest_renders_every_story_in_every_form() -> None:
    d, sub = digest()
    out = render(d, sub)
    assert out.key == d.dedup_key == digest_key(sub.id, at(0))
    assert out.subject == "[newsflow] korea: hourly digest, 2 stories"
    assert out.text.splitlines() == [
        "Hourly digest for 'korea', 2026-11-20 08:00-09:00 UTC: 2 stories",
        "1. Putin lands in Pyongyang",
        "   Sources (2): Harbor Times, Meridian Post",
        "2. Missile test <off the coast>",
        "   Sources (1): Harbor Times",
    ]
    assert "<b>Missile test &lt;off the coast&gt;</b>" in out.html and "<ol>" in out.html
    assert out.payload["id"] == d.dedup_key and out.payload["kind"] == "digest"
    assert [s["story_id"] for s in out.payload["stories"]] == ["s-1", "s-2"] and "items" not in out.payload


def test_period_label_names_both_dates_across_midnight() -> None:
    assert period_label(at(0), at(1)) == "2026-11-20 08:00-09:00 UTC"
    assert period_label(at(-8), at(16)) == "2026-11-20 00:00-2026-11-21 00:00 UTC"
