"""Fixtures shared by the integration tests (the local stack fixtures live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.devstack.demo import AlertReceiver
from tests.integration.helpers import Mailbox, smtp_server


@pytest.fixture
def webhook() -> Iterator[AlertReceiver]:
    """A local webhook receiver recording every alert POSTed to `webhook.url`."""
    hook = AlertReceiver()
    yield hook
    hook.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server (aiosmtpd) on a free port: its mailbox and the port."""
    with smtp_server() as served:
        yield served
