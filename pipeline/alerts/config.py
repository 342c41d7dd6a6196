"""Alert settings, kept in the alerts package until they join `pipeline/settings.py` as an `alerts:` section.

Read from `NEWSFLOW_ALERTS__*` environment variables (e.g. `NEWSFLOW_ALERTS__SMTP_PORT=2525`); the defaults work
against the local stack.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SUBSCRIPTIONS_INDEX = "newsflow-subscriptions"
ALERTS_INDEX = "newsflow-alerts"
GROUP_ID = "newsflow-alerts"


class AlertSettings(BaseSettings):
    """Where subscriptions and the delivery log live, and how hard delivery tries."""

    model_config = SettingsConfigDict(env_prefix="NEWSFLOW_ALERTS__", extra="ignore")

    subscriptions_index: str = SUBSCRIPTIONS_INDEX
    alerts_index: str = ALERTS_INDEX
    group_id: str = GROUP_ID
    settle_s: float = Field(
        1.0, ge=0, description="a new story's alert waits this long so reports arriving together share one alert"
    )
    update_after_sources: int = Field(
        3, ge=0, description="an `update` alert once this many more outlets joined a notified story (0 = never)"
    )
    attempts: int = Field(4, ge=1, description="delivery attempts per channel before the alert is dead-lettered")
    backoff_s: float = Field(0.25, gt=0, description="first retry delay; doubles per attempt")
    backoff_max_s: float = Field(5.0, gt=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "newsflow@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    delivery_threads: int = Field(8, ge=1, description="deliveries in flight: a slow channel never blocks others")
    orphan_after_s: float = Field(30.0, gt=0, description="pending alerts older than this are resumed by any worker")
    poll_timeout_ms: int = Field(200, ge=10)
    test_stories: int = Field(50, ge=1, le=1000, description="stories a subscription `test` shows at most")
