"""`newsflow demo` as a user runs it (a child process, on the test's own topics and indices): the summary shows the
stories and the alert the demo's subscription received on its local webhook; nothing is left behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import status
from pipeline.devstack.demo import DEMO_OWNER, demo_alert_settings
from pipeline.search import connect
from pipeline.settings import load_settings
from tests.conftest import Isolated

pytestmark = pytest.mark.integration

ALERT_LINE = re.compile(
    r'^  "(?P<title>[^"]+)" \| (?P<n>\d) sources: (?P<sources>.+), (?P<s>[\d.]+) s from poll to webhook$'
)


def test_demo_prints_the_alert_it_received_and_cleans_up(
    isolated: Isolated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSFLOW_STACK__STATE_DIR", str(tmp_path / "state"))  # its own heartbeats and logs
    settings = load_settings()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo"], capture_output=True, text=True, timeout=400, check=False
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "stories: 5 (expected 5)" in out and "articles indexed: 17 of 17" in out, out

    # What a first-time user reads (captured: not a terminal): plain progress lines, each saying something new,
    # never the same status side by side; no library's log lines, on either stream.
    progress = [line for line in out.splitlines() if "sample articles" in line and "indexed" in line]
    assert progress and all(line.count("indexed") == 1 for line in progress), progress
    assert len(progress) == len(set(progress)) and "\r" not in out, progress
    for stream in (out, done.stderr):
        assert not re.search(r"WARNING|ERROR|Traceback|kafka\.|NotCoordinator", stream), stream

    live = [line for line in out.splitlines() if line.strip().startswith('webhook received a "new" alert: ')]
    summary = out.split("== newsflow demo summary ==")[1]
    head = re.search(r'^alerts: (\d) for the subscription "North Korea", one per story', summary, re.MULTILINE)
    assert head, summary
    alerts = [m for line in summary.splitlines() if (m := ALERT_LINE.match(line))]
    assert 1 <= len(alerts) == int(head.group(1)) == len(live), out  # Putin's visit, Kim's trip: nothing else
    for alert in alerts:
        assert not any(w in alert["title"] for w in ("strike", "ECB", "Nordair", "Iberojet")), alert["title"]
        assert int(alert["n"]) >= 2 and "Wire Digest" not in alert["sources"]  # the wire copy is a duplicate
        assert 0 < float(alert["s"]) < 120

    # The demo subscription is gone, and so are the demo's processes.
    alerts_settings = demo_alert_settings(settings.alerts)
    backend = connect(settings.search)
    try:
        index = alerts_settings.subscriptions_index
        assert backend.client.count(index=index, body={"query": {"term": {"owner": DEMO_OWNER}}})["count"] == 0
        for name in ("subscriptions_index", "alerts_index"):
            backend.client.indices.delete(index=getattr(alerts_settings, name), ignore=[404])
    finally:
        backend.close()
    beats = status.read_all(settings.stack.state_dir)
    assert {n.split("-")[0] for n in beats} >= {"worker", "indexer", "alerts"}, beats
    for name, beat in beats.items():
        assert not Path(f"/proc/{beat['pid']}").exists(), f"{name} (pid {beat['pid']}) still running"
