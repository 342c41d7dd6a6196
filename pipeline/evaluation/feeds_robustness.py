"""Robustness of feed parsing over the shared feed corpus: `python -m pipeline.evaluation.feeds_robustness`.

Every file under `<shared>/data/feeds` (real-world feeds, parser fixtures, deliberately malformed XML and
encoding traps) must give items or one clean one-line FeedError, never a traceback. Prints counts and checks
that ISO-8859-1 feeds come out with correctly accented titles. `<shared>` is `$NEWSFLOW_SHARED`, else the
`shared` directory beside the project; when it is absent the run is skipped (exit 0). The corpus is read in
place, never copied into the project.

Fixture files from feedparser's test suite carry the HTTP header they are meant to be served with in a
comment (`Header: Content-type: text/xml; charset=...`); it is passed as `content_type`, as the poller would.

Exit status: 0 when there are no tracebacks, every error is one line and the ISO-8859-1 check passes; else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import os
import re
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import FeedError
from pipeline.ingest.feeds import FUTURE_TOLERANCE, ParsedFeed, parse_feed
from pipeline.ingest.parse_cli import cli_parse
from pipeline.settings import Settings

_HEADER = re.compile(rb"^Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_LATIN1_DECL = re.compile(rb"""<\?xml[^>]*encoding=["'](?:iso-8859-1|latin-?1)["']""", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.DOTALL | re.IGNORECASE)
_NOT_ITEMS = re.compile(r"<(image|textinput|textInput)\b.*?</\1>", re.DOTALL)
_MOJIBAKE = re.compile(r"Ã[\x80-\xbf]|\ufffd")


def shared_dir() -> Path:
    """`$NEWSFLOW_SHARED`, else `shared/` next to the project checkout."""
    if explicit := os.environ.get("NEWSFLOW_SHARED"):
        return Path(explicit)
    return Path(__file__).resolve().parents[2].parent / "shared"


def corpus_files(root: Path) -> list[Path]:
    """Feed files of the corpus (licence files excluded), in a stable order."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not p.name.upper().startswith(("LICENSE", "README"))
    )


def declared_content_type(content: bytes) -> str | None:
    """The HTTP Content-Type a feedparser fixture is meant to be served with, if it says."""
    match = _HEADER.search(content[:2000])
    return match.group(1).decode("ascii", "replace") if match else None


def expected_latin1_titles(content: bytes) -> set[str]:
    """Accented <title> texts of an ISO-8859-1 document, read independently of the parser under test."""
    if not _LATIN1_DECL.search(content[:300]):
        return set()
    titles = set()
    text = _NOT_ITEMS.sub("", content.decode("latin-1"))
    for raw in _TITLE.findall(text):
        if "<" in raw or "&lt;" in raw:  # CDATA or markup: not comparable as plain text
            continue
        text = " ".join(html.unescape(raw).split())
        if any(ord(c) > 127 for c in text):
            titles.add(text)
    return titles


@dataclass
class Report:
    files: int = 0
    with_items: int = 0
    empty: int = 0
    errors: int = 0
    tracebacks: int = 0
    multiline_errors: int = 0
    items: int = 0
    dropped: int = 0
    recovered: int = 0
    future_dates: int = 0
    duplicate_ids: int = 0
    latin1_files: int = 0
    latin1_titles_expected: int = 0
    latin1_titles_found: int = 0
    mojibake: list[str] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)
    slowest: tuple[float, str] = (0.0, "")
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.tracebacks == 0
            and self.multiline_errors == 0
            and not self.mojibake
            and self.latin1_titles_found == self.latin1_titles_expected
        )


def _check_parsed(
    report: Report, name: str, content: bytes, parsed: ParsedFeed, fetched_at: datetime
) -> None:
    report.items += len(parsed.items)
    report.dropped += parsed.dropped
    report.recovered += parsed.bozo is not None
    if parsed.items:
        report.with_items += 1
    else:
        report.empty += 1
    ids = [a.id for a in parsed.items]
    report.duplicate_ids += len(ids) - len(set(ids))
    report.future_dates += sum(a.published > fetched_at + FUTURE_TOLERANCE for a in parsed.items)
    texts = {a.title for a in parsed.items} | {parsed.title or ""}
    for text in texts:
        if _MOJIBAKE.search(text) and _LATIN1_DECL.search(content[:300]):
            report.mojibake.append(f"{name}: {text[:60]!r}")
    if (expected := expected_latin1_titles(content)) and declared_content_type(content) is None:
        report.latin1_files += 1
        report.latin1_titles_expected += len(expected)
        found = expected & texts
        report.latin1_titles_found += len(found)
        for missing in sorted(expected - found)[:3]:
            report.problems.append(f"{name}: ISO-8859-1 title not found intact: {missing[:60]!r}")


def run(root: Path, *, verbose: bool = False) -> Report:
    """Parse every corpus file in-process, then once more through `cli_parse` (the CLI contract)."""
    report = Report()
    files = corpus_files(root)
    for path in files:
        name = str(path.relative_to(root))
        content = path.read_bytes()
        report.files += 1
        fetched_at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            parsed = parse_feed(
                content,
                feed_url=path.resolve().as_uri(),
                fetched_at=fetched_at,
                content_type=declared_content_type(content),
            )
        except FeedError as exc:
            report.errors += 1
            report.multiline_errors += "\n" in str(exc)
            report.error_kinds[str(exc).split(":", 1)[0]] += 1
            if verbose:
                print(f"  error   {name}: {exc}")
            continue
        except Exception:
            report.tracebacks += 1
            report.problems.append(f"{name}: traceback\n{traceback.format_exc()}")
            continue
        finally:
            elapsed = time.perf_counter() - start
            report.slowest = max(report.slowest, (elapsed, name))
        _check_parsed(report, name, content, parsed, fetched_at)
        if verbose:
            print(f"  {len(parsed.items):4d}    {name}" + (f"  [{parsed.bozo}]" if parsed.bozo else ""))
    _check_cli(report, files)
    return report


def _check_cli(report: Report, files: list[Path]) -> None:
    """`newsflow feed parse` over the whole corpus: exit 0, one JSON line per item or error, no traceback."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli_parse([str(p) for p in files], Settings())
    except Exception:
        report.tracebacks += 1
        report.problems.append(f"cli_parse: traceback\n{traceback.format_exc()}")
        return
    lines = out.getvalue().splitlines()
    # Items are parsed without the fixture's HTTP header here, so counts may differ slightly from the
    # in-process run; what must hold is the shape of the output.
    if status != 0:
        report.problems.append(f"cli_parse exited {status}")
    if "Traceback" in out.getvalue() or "Traceback" in err.getvalue():
        report.tracebacks += 1
        report.problems.append("cli_parse printed a traceback")
    bad = [line for line in lines if not (line.startswith("{") and line.endswith("}"))]
    if bad:
        report.problems.append(f"cli_parse printed {len(bad)} non-JSON line(s), e.g. {bad[0][:80]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per file")
    args = parser.parse_args(argv)
    root = shared_dir() / "data" / "feeds"
    if not root.is_dir():
        print(f"skipped: feed corpus not found at {root} (set NEWSFLOW_SHARED)")
        return 0
    report = run(root, verbose=args.verbose)
    print(f"corpus:           {root}")
    print(f"files:            {report.files}")
    print(f"  with items:     {report.with_items}")
    print(f"  empty feeds:    {report.empty} (well-formed, no items)")
    print(f"  clean errors:   {report.errors} " + str(dict(report.error_kinds.most_common())))
    print(f"  tracebacks:     {report.tracebacks}")
    print(f"  multi-line err: {report.multiline_errors}")
    print(f"  recovered (bozo warning): {report.recovered}")
    print(
        f"items:            {report.items} (dropped empty: {report.dropped}, dup ids: {report.duplicate_ids})"
    )
    print(f"future dates:     {report.future_dates}")
    print(
        f"ISO-8859-1:       {report.latin1_titles_found}/{report.latin1_titles_expected} accented titles "
        f"intact in {report.latin1_files} feeds; mojibake: {len(report.mojibake)}"
    )
    print(f"slowest file:     {report.slowest[1]} ({report.slowest[0] * 1000:.0f} ms)")
    for problem in report.problems + report.mojibake:
        print(f"PROBLEM: {problem}")
    print("result:           " + ("OK" if report.ok else "FAILED"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
