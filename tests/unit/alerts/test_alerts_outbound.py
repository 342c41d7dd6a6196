"""Webhooks under the outbound policy, on loopback only: refused unless allow-listed, no redirects followed, a
DNS answer that turned private after the subscription was accepted refused at send time (and dead-lettered with
the reason, not retried), and the door check that keeps such a subscription from being stored."""

from __future__ import annotations

import pytest

from pipeline.alerts.delivery import PermanentError, Senders, with_retries
from pipeline.alerts.messages import render
from pipeline.alerts.models import Alert, WebhookChannel
from pipeline.alerts.store import check_channels
from pipeline.ingest import safety
from pipeline.ingest.safety import OutboundRefused
from pipeline.settings import AlertSettings, Settings
from tests.unit.alerts.samples import sub
from tests.unit.loopback import Resolver, Server


def senders(*allowed: str) -> Senders:
    alerts = AlertSettings(allow_private_hosts=list(allowed))
    return Senders(Settings(alerts=alerts), alerts)


def send(s: Senders, url: str) -> None:
    subscription = sub()
    alert = Alert(subscription_id=subscription.id, story_id="s-1", kind="new", title="T", sources=["A"])
    s.webhook(render(alert, subscription), WebhookChannel(url=url))


def test_a_webhook_on_loopback_is_refused_unless_allow_listed(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}/hook"
    with pytest.raises(PermanentError, match=r"a loopback address \(add it to alerts.allow_private_hosts"):
        send(senders(), url)
    assert server.hits == []
    send(senders("127.0.0.1"), url)
    assert [path for path, _ in server.hits] == ["/hook"]


def test_a_webhook_redirect_is_not_followed(server: Server) -> None:
    server.routes["/hook"] = (307, {"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(PermanentError, match=r"redirect .* not followed"):
        send(senders("127.0.0.1"), f"http://127.0.0.1:{server.port}/hook")
    assert [path for path, _ in server.hits] == ["/hook"]


def test_rebinding_after_the_subscription_was_accepted_is_refused_at_send_time(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = Resolver({"hooks.test": ["8.8.8.8", "127.0.0.1"]})
    monkeypatch.setattr(safety, "getaddrinfo", resolver)
    url = f"http://hooks.test:{server.port}/hook"
    check_channels([WebhookChannel(url=url)], AlertSettings())  # accepted at the door: a public answer
    s = senders()
    result = with_retries(lambda: send(s, url), attempts=4, base=0.01, cap=0.01)
    assert result["status"] == "dead" and result["attempts"] == 1  # permanent: not retried
    assert "resolves to 127.0.0.1, a loopback address" in result["last_error"]
    assert server.hits == []


def test_the_door_refuses_a_private_webhook_before_anything_is_stored() -> None:
    with pytest.raises(OutboundRefused, match=r"refusing webhook URL 'http://169.254.169.254/x'.*metadata"):
        check_channels([WebhookChannel(url="http://169.254.169.254/x")], AlertSettings())
    check_channels([WebhookChannel(url="http://127.0.0.1:1/x")], AlertSettings(allow_private_hosts=["127.0.0.1"]))
