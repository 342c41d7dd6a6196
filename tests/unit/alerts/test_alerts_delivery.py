"""Delivery without services: retries and backoff, dead-letters, what a webhook channel gets."""

from __future__ import annotations

from pipeline.alerts.delivery import PermanentError, backoff_delays, overall, with_retries
from pipeline.alerts.messages import render, webhook_body
from pipeline.alerts.models import Alert, WebhookChannel
from tests.unit.alerts.samples import sub


def test_retries_back_off_then_dead_letter() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    result = with_retries(failing, attempts=4, base=0.5, cap=1.5, sleep=waits.append)
    assert result["status"] == "dead" and result["attempts"] == 4 and "refused" in result["last_error"]
    assert waits == [0.5, 1.0, 1.5] == backoff_delays(4, 0.5, 1.5)
    assert len(calls) == 4


def test_permanent_errors_are_not_retried_and_a_later_success_is_sent() -> None:
    def gone() -> None:
        raise PermanentError("HTTP 404")

    assert with_retries(gone, 5, 0.1, 1, sleep=lambda _: None) == {
        "status": "dead",
        "attempts": 1,
        "last_error": "HTTP 404",
    }
    outcomes = iter([ConnectionError("x"), None])

    def flaky() -> None:
        if (exc := next(outcomes)) is not None:
            raise exc

    assert with_retries(flaky, 3, 0.1, 1, sleep=lambda _: None)["status"] == "sent"
    assert overall([{"status": "sent"}, {"status": "dead"}]) == "partial"


def test_slack_payload_is_text_only() -> None:
    s = sub()
    alert = Alert(subscription_id=s.id, story_id="s-1", kind="new", title="T", sources=["A", "B"])
    out = render(alert, s)
    slack = webhook_body(out, WebhookChannel(url="http://x", slack=True))
    assert slack == {"text": out.text} and "T" in slack["text"] and "A, B" in slack["text"]
    plain = webhook_body(out, WebhookChannel(url="http://x"))
    assert plain["id"] == alert.dedup_key and plain["sources"] == ["A", "B"]
