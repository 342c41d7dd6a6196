"""What the channels send: one rendering per alert or digest, in every form a channel needs.

An `Outgoing` carries JSON (webhooks, Kafka), plain text (Slack, the email's text part) and HTML (the email), plus
the dedup key, so a sender never needs to know whether it carries one story's alert or a period's digest.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.alerts.models import Alert, Digest, Subscription, WebhookChannel


@dataclass(frozen=True)
class Outgoing:
    """One notice, rendered. `key` is the dedup key: receivers can drop a resend by it."""

    key: str
    subject: str
    text: str
    html: str
    payload: dict[str, Any]


def render(message: Alert | Digest, sub: Subscription) -> Outgoing:
    if isinstance(message, Digest):
        return Outgoing(
            key=message.dedup_key,
            subject=f"[newsflow] {sub.name}: {digest_title(message)}",
            text=digest_text(message, sub),
            html=digest_html(message, sub),
            payload=digest_payload(message, sub),
        )
    return Outgoing(
        key=message.dedup_key,
        subject=f"[newsflow] {message.title}",
        text=message_text(message, sub),
        html=message_html(message, sub),
        payload=alert_payload(message, sub),
    )


def webhook_body(out: Outgoing, channel: WebhookChannel) -> dict[str, Any]:
    """What a webhook receives: the JSON, or Slack's `{"text"}` when the channel asks for it."""
    return {"text": out.text} if channel.slack else out.payload


# ------------------------------------------------------------------------------------------ one story


def message_text(alert: Alert, sub: Subscription) -> str:
    head = "New story" if alert.kind == "new" else "Story update"
    return (
        f"{head}: {alert.title}\n"
        f"Sources ({len(alert.sources)}): {', '.join(alert.sources)}\n"
        f"Articles: {len(alert.article_ids)}\n"
        f"Subscription: {sub.name}"
    )


def message_html(alert: Alert, sub: Subscription) -> str:
    head = "New story" if alert.kind == "new" else "Story update"
    items = "".join(f"<li>{html.escape(s)}</li>" for s in alert.sources)
    return (
        f"<html><body><h2>{head}: {html.escape(alert.title)}</h2>"
        f"<p>Sources ({len(alert.sources)}):</p><ul>{items}</ul>"
        f"<p>Subscription: {html.escape(sub.name)}</p></body></html>"
    )


def alert_payload(alert: Alert, sub: Subscription) -> dict[str, Any]:
    """The alert as JSON, with `id` = dedup key."""
    return {"id": alert.dedup_key, "subscription": sub.name, **alert.model_dump(mode="json")}


# ------------------------------------------------------------------------------------------ a digest


def period_label(start: datetime, end: datetime) -> str:
    """`2026-11-20 08:00-09:00 UTC`, with the end's date when the period crosses midnight."""
    tail = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M}-{tail} UTC"


def digest_title(digest: Digest) -> str:
    n = len(digest.items)
    return f"{digest.frequency} digest, {n} {_stories(n)}"


def _stories(n: int) -> str:
    return "story" if n == 1 else "stories"


def digest_text(digest: Digest, sub: Subscription) -> str:
    period = period_label(digest.period_start, digest.period_end)
    n = len(digest.items)
    lines = [f"{digest.frequency.capitalize()} digest for {sub.name!r}, {period}: {n} {_stories(n)}"]
    for n, item in enumerate(digest.items, 1):
        lines.append(f"{n}. {item.title}")
        lines.append(f"   Sources ({len(item.sources)}): {', '.join(item.sources)}")
    return "\n".join(lines)


def digest_html(digest: Digest, sub: Subscription) -> str:
    stories = "".join(
        f"<li><b>{html.escape(i.title)}</b><br>Sources ({len(i.sources)}): {html.escape(', '.join(i.sources))}</li>"
        for i in digest.items
    )
    return (
        f"<html><body><h2>{html.escape(sub.name)}: {html.escape(digest_title(digest))}</h2>"
        f"<p>{html.escape(period_label(digest.period_start, digest.period_end))}</p>"
        f"<ol>{stories}</ol></body></html>"
    )


def digest_payload(digest: Digest, sub: Subscription) -> dict[str, Any]:
    """The digest as JSON: `id` = its (subscription, period) key, `stories` in the order they first matched."""
    data = digest.model_dump(mode="json")
    stories = data.pop("items")
    return {"id": digest.dedup_key, "kind": "digest", "subscription": sub.name, **data, "stories": stories}
