"""The `newsflow` command (also `python -m pipeline`).

Every failure a user can cause or meet (bad config, stack down, bad input file, bad query) is one line on
stderr and a non-zero exit code; an unexpected bug is one line too, with the traceback kept in a log file. A reader
that hangs up (`newsflow alerts log | head`) ends any command quietly: nothing on stderr, exit 141.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import __version__
from pipeline.errors import NewsflowError
from pipeline.search.backend import describe_unreachable
from pipeline.settings import Settings, get_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import devstack as stack

    return stack.cli(args.action, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack import supervisor

    return supervisor.run_all(settings, workers=args.workers)


def _poller(args: argparse.Namespace, settings: Settings) -> int:
    if args.static:
        from pipeline.ingest import poller

        return poller.run(settings, cycles=1 if args.once else None)
    from pipeline.ingest import registry

    return registry.run(settings, once=args.once)


def _feeds(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli import feeds as feeds_cli

    action = args.feeds_command
    if action == "list":
        return feeds_cli.cmd_list(settings, args.json)
    if action == "add":
        given = {  # only what was given: an existing feed keeps everything else
            "name": args.name,
            "tags": args.tag or None,
            "enabled": args.enabled,
            "min_interval_s": args.min_interval,
            "max_interval_s": args.max_interval,
        }
        return feeds_cli.cmd_add(settings, args.url, {k: v for k, v in given.items() if v is not None})
    if action == "remove":
        return feeds_cli.cmd_remove(settings, args.feed)
    if action == "import":
        return feeds_cli.cmd_import(settings, args.file)
    return feeds_cli.cmd_export(settings, args.output)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import app

    # configure_logging() quietens the Kafka client; --loglevel is the way to hear it (and the stages) again.
    for name in ("kafka", "pipeline"):
        logging.getLogger(name).setLevel(args.loglevel.upper())
    return app.run_worker(settings, tuple(args.stages.split(",")))


def _indexer(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.search import indexer

    return indexer.run(settings)


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli import report
    from pipeline.search.queries import parse_filters

    filters = parse_filters(args.entity, args.source, args.since, args.unique)
    return report.search(settings, " ".join(args.query), size=args.size, as_json=args.json, filters=filters)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli import report

    return report.status(settings)


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.search import connect

    backend = connect(settings.search)
    changed = backend.ensure_templates()
    print(f"{backend.kind} at {settings.search.url}: " + (", ".join(changed) if changed else "up to date"))
    return 0


def _kibana(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.search import kibana

    return kibana.cli_import(args.url, args.file)


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.stories.offline import cli_cluster

    return cli_cluster(args.input, args.output, settings)


def _tag(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.nlp.entities import cli_tag

    return cli_tag(args.input, args.output, settings)


def _feed_parse(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ingest.parse_cli import cli_parse

    return cli_parse(args.inputs, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.devstack import demo

    return demo.run(settings, keep_serving=args.serve)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="newsflow", description="News-ingest streaming pipeline.")
    p.add_argument("--version", action="version", version=f"newsflow {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(handler=handler)
        return sp

    sp = cmd("stack", _stack, "start/stop/inspect the local Kafka + OpenSearch")
    sp.add_argument("action", choices=["up", "down", "status"])
    sp = cmd("run", _run, "run poller, worker(s), indexer and alerting together, with a live status line")
    sp.add_argument("--workers", type=int, default=1, help="number of worker processes")
    sp = cmd("poller", _poller, "poll this process's share of the feed registry into Kafka (start N to scale)")
    sp.add_argument("--once", action="store_true", help="poll every registry feed once, then exit")
    sp.add_argument("--static", action="store_true", help="poll config/feeds.yaml directly, without the registry")
    sp = cmd("worker", _worker, "run one stream-processor worker (tagging + story assignment)")
    sp.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    sp.add_argument(
        "--stages", default="tag,assign", choices=["tag,assign", "tag", "assign"], help="the stages this worker runs"
    )
    cmd("indexer", _indexer, "index enriched articles and stories into the search engine")
    sp = cmd("search", _search, "search stories and their articles")
    sp.add_argument("query", nargs="*", help="query text (optional when a filter is given)")
    sp.add_argument("--size", type=int, default=10, help="stories to show")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument(
        "--entity",
        action="append",
        default=[],
        metavar="TYPE:NAME",
        help='only articles tagged with this entity, e.g. person:"Vladimir Putin" (types: person, organization,'
        " location; repeat: all must match)",
    )
    sp.add_argument(
        "--source", action="append", default=[], metavar="NAME", help="only articles from this outlet (repeat: any)"
    )
    sp.add_argument("--since", metavar="AGE", help="only articles published in the last AGE, e.g. 30m, 24h, 7d")
    sp.add_argument("--unique", action="store_true", help="leave out duplicates (verbatim copies)")
    cmd("status", _status, "what is healthy, lagging or failing")
    sp = cmd("index", _index, "search index management")
    sp.add_argument("action", choices=["setup"])
    sp = cmd("kibana", _kibana, "import newsflow's Kibana data views, saved searches and dashboard")
    sp.add_argument("action", choices=["import"])
    sp.add_argument("--url", help="Kibana address (default: $KIBANA_URL, else http://127.0.0.1:5601)")
    sp.add_argument("--file", type=Path, help="saved-objects NDJSON (default: deploy/kibana/newsflow.ndjson)")
    for name, handler, help in (
        ("cluster", _cluster, "assign stories to a JSONL file of articles (the stream's engine)"),
        ("tag", _tag, "tag entities in a JSONL file of articles (the stream's tagger)"),
    ):
        sp = cmd(name, handler, help)
        sp.add_argument("--input", type=Path, required=True)
        sp.add_argument("--output", type=Path, required=True)
    sp = cmd("feed", _feed_parse, "feed tools")
    fsub = sp.add_subparsers(dest="feed_command", required=True, metavar="ACTION")
    fp = fsub.add_parser("parse", help="parse feed files/URLs into the poller's JSON items")
    fp.add_argument("inputs", nargs="+", metavar="FILE_OR_URL")
    sp = cmd("feeds", _feeds, "the feed registry (a compacted Kafka topic every poller reads)")
    fsub = sp.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    fp = fsub.add_parser("list", help="feeds with their health (last success/error, interval, items in 24 h)")
    fp.add_argument("--json", action="store_true", help="one JSON object per feed")
    fp = fsub.add_parser(
        "add", help="add a feed, or change an existing one: only the options given change, the rest is kept"
    )
    fp.add_argument("url")
    fp.add_argument("--name")
    fp.add_argument("--tag", action="append", default=[], help="repeat for several tags (replaces the feed's tags)")
    fp.add_argument("--min-interval", type=float, metavar="SECONDS")
    fp.add_argument("--max-interval", type=float, metavar="SECONDS")
    on_off = fp.add_mutually_exclusive_group()
    on_off.add_argument(
        "--disabled", dest="enabled", action="store_false", default=None, help="keep it in the registry, unpolled"
    )
    on_off.add_argument(
        "--enabled", dest="enabled", action="store_true", default=None, help="poll it again (after --disabled)"
    )
    fp = fsub.add_parser("remove", help="remove a feed (by id or URL)")
    fp.add_argument("feed", metavar="ID_OR_URL")
    fp = fsub.add_parser("import", help="add the feeds of an OPML file (or a feeds.yaml)")
    fp.add_argument("file", type=Path)
    fp = fsub.add_parser("export", help="the registry as OPML")
    fp.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    sp = cmd("demo", _demo, "run the pipeline on the bundled sample feeds and print a summary")
    sp.add_argument("--serve", action="store_true", help="keep serving the sample feeds afterwards")
    from pipeline.cli.alerts import add_parsers as add_alert_parsers

    add_alert_parsers(cmd)
    return p


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # kafka-python warns about transients a person need not see (a new group's coordinator loading, a leader
    # moving); newsflow reports real problems in its own words. Stage processes write to log files, which keep
    # the libraries' warnings (`NEWSFLOW_LOG_LIBRARIES`, set by `newsflow run` for its children).
    library = logging.WARNING if os.environ.get("NEWSFLOW_LOG_LIBRARIES") else logging.ERROR
    for noisy in ("kafka", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else library)
    # The search clients log every failed connection with a traceback; newsflow reports those itself.
    for client in ("opensearch", "elasticsearch", "elastic_transport"):
        logging.getLogger(client).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


CLOSED_PIPE_EXIT = 141  # 128 + SIGPIPE: what a command the reader hung up on exits with (`yes | head`)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        code = int(args.handler(args, get_settings()))
        sys.stdout.flush()  # a reader that hung up (`| head`) shows here, not in the interpreter's exit
        return code
    except BrokenPipeError as exc:
        if not _stdout_closed():  # a socket's EPIPE (Kafka, SMTP, ...) is a real error
            return _internal_error(exc)
        _silence_stdout()
        return CLOSED_PIPE_EXIT
    except NewsflowError as exc:
        _tell(f"newsflow: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _tell("newsflow: interrupted")
        return 130
    except Exception as exc:
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    if unreachable := describe_unreachable(exc):
        _tell(f"newsflow: error: {unreachable}")
        return 1
    log_path = _crash_log()
    _tell(f"newsflow: internal error: {type(exc).__name__}: {exc} (traceback in {log_path})")
    return 70


def _tell(line: str) -> None:
    """One line on stderr; a stderr nobody reads (`2>&1 | head`) is not worth a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _stdout_closed() -> bool:
    """Whether stdout is what broke: a write to it fails (even an empty buffer's flush would not tell), or it
    is a pipe whose reader has gone."""
    import select
    import stat

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Python's recipe for a closed stdout: point the descriptor at /dev/null so the flush at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _crash_log() -> Path:
    """Keep the traceback for whoever debugs it; the user sees one line."""
    try:
        folder = get_settings().stack.state_dir / "logs"
    except Exception:  # unreadable settings must not turn one line into a traceback
        folder = Path.cwd() / ".newsflow" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crash.log"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(traceback.format_exc() + "\n")
    return path
