"""A status line a person can read: rewritten in place on a terminal; in a log or CI output (not a TTY) printed
as plain lines, only when it says something new and at most every `every_s`, so a captured log never shows the
same line side by side or a hundred times over. Events (`note`) get a line of their own either way."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._latest = ""  # the newest status text
        self._printed = ""  # what a plain-line log last showed
        self._printed_at = -float("inf")
        self._width = 0  # characters of the status line now on the terminal

    def update(self, text: str) -> None:
        self._latest = text
        if self.tty:
            self._draw(text)
        elif text != self._printed and time.monotonic() - self._printed_at >= self.every_s:
            self._print(text)

    def note(self, text: str) -> None:
        """An event (an alert arrived, a stage started): its own line, the status line kept below it."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(text, file=self.stream, flush=True)
        if self.tty and self._latest:
            self._draw(self._latest)

    def done(self, text: str | None = None) -> None:
        """End the status line (a plain log gets its final state if not shown yet), then `text` if given."""
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        elif not self.tty and self._latest and self._latest != self._printed:
            self._print(self._latest)
        if text:
            print(text, file=self.stream, flush=True)

    def _draw(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self._printed, self._printed_at = text, time.monotonic()
