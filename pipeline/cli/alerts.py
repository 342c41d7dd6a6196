"""`newsflow subscriptions add|list|show|rm|test`, `newsflow alerts [log|run|digest]`, `newsflow api [serve|key]`.

`add_parsers(cmd)` takes the `cmd(name, handler, help)` helper of `cli.build_parser`. The CLI is the operator's
tool: it acts for any owner given with `--owner` (default `$USER`); the REST API acts only for its key's owner.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from datetime import datetime
from typing import get_args

from pipeline.alerts.models import (
    Channel,
    EmailChannel,
    EntityFilter,
    Frequency,
    KafkaChannel,
    Subscription,
    WebhookChannel,
)
from pipeline.alerts.store import SubscriptionStore, check_channels, check_subscription
from pipeline.errors import QueryError, first_problem
from pipeline.search.queries import parse_entity, parse_since
from pipeline.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Cmd = Callable[[str, Handler, str], argparse.ArgumentParser]


def add_parsers(cmd: Cmd) -> None:
    """Register both commands on newsflow's parser."""
    sp = cmd("subscriptions", cmd_subscriptions, "alert subscriptions (stored as percolator queries)")
    sp.add_argument("--owner", default=_default_owner(), help="whose subscriptions (default: $USER)")
    ssub = sp.add_subparsers(dest="subscriptions_command", required=True, metavar="ACTION")
    p = ssub.add_parser("add", help="subscribe to stories matching a query")
    p.add_argument("name")
    p.add_argument(
        "query",
        nargs="?",
        default="",
        help='words, "phrases", AND/OR/NOT, (...), title:/summary:/text:, korea* (see README), e.g. "North Korea"',
    )
    p.add_argument("--entity", action="append", default=[], metavar="TYPE:NAME", help="person/organization/location")
    p.add_argument("--source", action="append", default=[], metavar="NAME")
    p.add_argument("--language", action="append", default=[], metavar="CODE")
    p.add_argument("--webhook", action="append", default=[], metavar="URL")
    p.add_argument("--slack", action="append", default=[], metavar="URL", help="webhook with a Slack payload")
    p.add_argument("--email", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--kafka", action="append", default=[], metavar="TOPIC")
    p.add_argument("--no-updates", action="store_true", help="only the first alert per story")
    p.add_argument(
        "--frequency",
        choices=get_args(Frequency),
        default="instant",
        help="instant: one alert per story as it breaks; hourly/daily: one digest per period",
    )
    p = ssub.add_parser("list", help="your subscriptions")
    p.add_argument("--json", action="store_true")
    p = ssub.add_parser("show", help="one subscription in full (JSON)")
    p.add_argument("id")
    p = ssub.add_parser("rm", help="delete one of your subscriptions")
    p.add_argument("id")
    p = ssub.add_parser("test", help="recent stories that would have matched")
    p.add_argument("id")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h, 7d")
    sp = cmd("alerts", cmd_alerts, "the alert delivery log, run the alerting stage, or send the digests due")
    sp.add_argument("action", nargs="?", choices=["log", "run", "digest"], default="log")
    sp.add_argument("--owner", help="`log`: only this owner's alerts")
    sp.add_argument("--size", type=int, default=20, help="`log`: how many")
    sp.add_argument("--now", action="store_true", help="`digest`: also send the current, unfinished periods")
    sp = cmd("api", cmd_api, "serve the subscriptions REST API (OpenAPI at /docs), or make an API key")
    sp.add_argument("action", nargs="?", choices=["serve", "key"], default="serve")
    sp.add_argument("--owner", help="`key`: the owner the new key acts for")


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container
        return "default"


def _channels(args: argparse.Namespace) -> list[Channel]:
    return [
        *(WebhookChannel(url=u) for u in args.webhook),
        *(WebhookChannel(url=u, slack=True) for u in args.slack),
        *(EmailChannel(to=a) for a in args.email),
        *(KafkaChannel(topic=t) for t in args.kafka),
    ]


def _entities(specs: list[str]) -> EntityFilter:
    """`--entity TYPE:NAME` as `newsflow search` reads it."""
    out: dict[str, list[str]] = {}
    for kind, name in map(parse_entity, specs):
        out.setdefault(kind, []).append(name)
    return EntityFilter(**out)


def cmd_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from pipeline.search import connect

    alerts = settings.alerts
    action = args.subscriptions_command
    if action == "add":
        try:
            sub = Subscription(
                name=args.name,
                owner=args.owner,
                query=args.query,
                entities=_entities(args.entity),
                sources=args.source,
                languages=args.language,
                channels=_channels(args),
                updates=not args.no_updates,
                frequency=args.frequency,
            )
        except ValidationError as exc:
            where, problem = first_problem(exc)
            hint = " (give --webhook, --slack, --email or --kafka)" if where == "channels" else ""
            raise QueryError(f"invalid subscription {where}: {problem}{hint}") from None
        check_subscription(sub, settings.search.query_limits)  # the API's checks, before the engine is asked
        check_channels(sub.channels, alerts)
        SubscriptionStore(connect(settings.search), alerts).add(sub)
        print(sub.id)
        return 0
    store = SubscriptionStore(connect(settings.search), alerts)
    if action == "list":
        subs = store.list(args.owner)
        for s in subs:
            if args.json:
                print(s.model_dump_json())
            else:
                targets = ", ".join(f"{c.type}" for c in s.channels)
                print(f"{s.id}  {s.name}  {s.query!r}  [{targets}]  {s.frequency}")
        return 0
    if action == "rm":
        if not store.delete(args.id, args.owner):
            raise QueryError(f"no subscription {args.id} of owner {args.owner}")
        return 0
    found = store.get(args.id, args.owner)
    if found is None:
        raise QueryError(f"no subscription {args.id} of owner {args.owner}")
    if action == "show":
        print(found.model_dump_json(indent=2))
        return 0
    since = parse_since(args.since)
    matches = store.recent_matches(found, settings.search.indices.articles, since, alerts.test_stories)
    for story_id, title in matches:
        print(f"{story_id}  {title}")
    if not matches:
        print(f"no story since {args.since} would have matched {found.name!r}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.alerts.alert_log import AlertLog
    from pipeline.search import connect

    if args.action == "run":
        from pipeline.alerts.consumer import run

        return run(settings)
    if args.action == "digest":
        return send_digests(settings, early=args.now)
    for a in AlertLog(connect(settings.search), settings.alerts).recent(args.owner, args.size):
        fields = ("created_at", "status", "kind", "subscription_name", "title", "attempts", "latency_s")
        line = {k: a.get(k) for k in fields}
        if a.get("last_error"):
            line["last_error"] = a["last_error"]
        print(json.dumps(line, ensure_ascii=False))
    return 0


def send_digests(settings: Settings, *, early: bool) -> int:
    """`newsflow alerts digest [--now]`: seal and deliver the digests due (as the alerting stage does every
    `alerts.digest_check_s`), one line each. A digest already sent for its period is never sent again."""
    from pipeline.alerts.dispatch import Dispatcher
    from pipeline.alerts.messages import period_label
    from pipeline.search import connect

    alerts = settings.alerts
    backend = connect(settings.search)
    dispatcher = Dispatcher(settings, alerts, backend)
    try:
        dispatcher.setup()
        keys = dispatcher.flush_digests(early=early)
        for key, outcome in zip(keys, dispatcher.deliver(keys), strict=True):
            doc = dispatcher.log.get(key)
            d = doc["_source"] if doc else {}
            period = period_label(*(datetime.fromisoformat(d[k]) for k in ("period_start", "period_end")))
            error = f" ({d['last_error']})" if d.get("last_error") else ""
            print(
                f"{d.get('subscription_name')} ({d.get('owner')}): {d.get('title')}, {period} -> "
                f"{outcome or 'left for a retry'}{error}"
            )
        if not keys:
            hint = "" if early else " (--now also sends the current, unfinished periods)"
            print(f"no digest due{hint}")
    finally:
        dispatcher.close()
        backend.close()
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.api import alerts as api

    if args.action == "serve":
        return api.serve(settings)
    if not args.owner:
        raise QueryError("`newsflow api key` needs --owner NAME: the owner the key acts for")
    key = api.new_key()
    print(f"API key for {args.owner} (shown once, stored nowhere): {key}")
    print("add its hash to config/newsflow.yaml:")
    print(f"api:\n  keys:\n    - {{owner: {json.dumps(args.owner)}, sha256: {api.hash_key(key)}}}")
    return 0
