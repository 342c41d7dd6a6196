"""Delivery on a subscription's channels: one attempt per channel type (webhook, email, Kafka), retries with
exponential backoff, and the outcome per channel (attempts, last error) and overall (`sent`, `partial`, `dead`).

A failure no retry can fix (`PermanentError`, e.g. HTTP 404 from a webhook, an address the outbound policy refuses,
a redirect) dead-letters at once; any other is retried until the attempts run out. Webhooks go through the outbound
policy (`pipeline/ingest/safety.py`): resolved once, checked, connected to the checked address, no redirects
followed, so a host whose DNS answer turns private after the subscription was accepted is refused at send time.
A Kafka channel posts only to a topic of the operator's allow-list (`alerts.kafka_topics`, `topics.py`), checked
again at send time. Senders only raise: recording the outcome is the alert log's job.
"""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import httpx

from pipeline.alerts.alert_log import Status
from pipeline.alerts.messages import Outgoing, webhook_body
from pipeline.alerts.models import Channel, EmailChannel, KafkaChannel, WebhookChannel
from pipeline.alerts.store import webhook_policy
from pipeline.alerts.topics import TopicRefused, check_kafka_topic
from pipeline.ingest.safety import OutboundRefused, pinned_sync_transport
from pipeline.settings import AlertSettings, Settings


class PermanentError(Exception):
    """A failure no retry can fix (e.g. HTTP 404 from a webhook): dead-letter at once."""


class Senders:
    """One delivery attempt per channel type; raising means the attempt failed."""

    def __init__(self, settings: Settings, alerts: AlertSettings) -> None:
        self.settings, self.alerts = settings, alerts
        transport = pinned_sync_transport(webhook_policy(alerts))
        self._http = httpx.Client(timeout=alerts.webhook_timeout_s, transport=transport, follow_redirects=False)
        self._producer: Any = None
        self._lock = threading.Lock()

    def send(self, out: Outgoing, channel: Channel) -> None:
        if isinstance(channel, WebhookChannel):
            self.webhook(out, channel)
        elif isinstance(channel, EmailChannel):
            self.email(out, channel)
        else:
            self.kafka(out, channel)

    def webhook(self, out: Outgoing, channel: WebhookChannel) -> None:
        """JSON POST; a Slack-style channel gets `{"text": ...}` instead."""
        try:
            response = self._http.post(channel.url, json=webhook_body(out, channel))
        except OutboundRefused as exc:
            raise PermanentError(f"refusing webhook URL {channel.url!r}: {exc}") from None
        if response.is_redirect:
            where = response.headers.get("location", "?")
            raise PermanentError(f"HTTP {response.status_code} redirect from {channel.url} to {where}: not followed")
        if response.status_code >= 400:
            error = f"HTTP {response.status_code} from {channel.url}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                raise PermanentError(error)
            raise RuntimeError(error)

    def email(self, out: Outgoing, channel: EmailChannel) -> None:
        a = self.alerts
        msg = EmailMessage()
        msg["Subject"] = out.subject
        msg["From"] = a.smtp_from
        msg["To"] = channel.to
        msg["X-Newsflow-Alert"] = out.key
        msg.set_content(out.text)
        msg.add_alternative(out.html, subtype="html")
        with smtplib.SMTP(a.smtp_host, a.smtp_port, timeout=a.webhook_timeout_s) as smtp:
            if a.smtp_starttls:
                smtp.starttls()
            if a.smtp_username:
                smtp.login(a.smtp_username, a.smtp_password or "")
            smtp.send_message(msg)

    def kafka(self, out: Outgoing, channel: KafkaChannel) -> None:
        """JSON on the channel's topic, if the allow-list still allows it (checked again here: the list may have
        changed since the subscription was accepted); a refused topic is dead at once."""
        from pipeline.stream import bus

        try:
            check_kafka_topic(channel.topic, self.alerts, self.settings.kafka.topics)
        except TopicRefused as exc:
            raise PermanentError(str(exc)) from None
        with self._lock:
            if self._producer is None:
                self._producer = bus.producer(self.settings)
        value = json.dumps(out.payload).encode()
        self._producer.send(channel.topic, key=out.key, value=value).get(timeout=10)

    def close(self) -> None:
        self._http.close()
        if self._producer is not None:
            self._producer.close()


def backoff_delays(attempts: int, base: float, cap: float) -> list[float]:
    """Waits between attempts: base, 2*base, 4*base ... capped (attempts-1 of them)."""
    return [min(cap, base * 2**i) for i in range(max(0, attempts - 1))]


def with_retries(
    attempt: Callable[[], None], attempts: int, base: float, cap: float, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Try up to `attempts` times with exponential backoff; the result says `sent` or `dead` and why."""
    delays = backoff_delays(attempts, base, cap)
    last_error: str | None = None
    for n in range(1, attempts + 1):
        try:
            attempt()
            return {"status": "sent", "attempts": n, "last_error": last_error}
        except PermanentError as exc:
            return {"status": "dead", "attempts": n, "last_error": str(exc)}
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:500]
            if n <= len(delays):
                sleep(delays[n - 1])
    return {"status": "dead", "attempts": attempts, "last_error": last_error}


def overall(results: list[dict[str, Any]]) -> Status:
    sent = sum(r["status"] == "sent" for r in results)
    return "sent" if sent == len(results) else ("dead" if sent == 0 else "partial")


def channel_target(channel: Channel) -> str:
    """Where the channel delivers: the webhook URL, the email address or the Kafka topic."""
    if isinstance(channel, WebhookChannel):
        return channel.url
    return channel.to if isinstance(channel, EmailChannel) else channel.topic
