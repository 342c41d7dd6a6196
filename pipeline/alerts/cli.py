"""`newsflow subscriptions add|list|rm|test` and `newsflow alerts [run]`, ready to be wired into `pipeline/cli.py`.

`add_parsers(cmd)` takes the `cmd(name, handler, help)` helper of `cli.build_parser`, so wiring is two lines there.
Until API keys exist, the owner is `--owner` (default `$USER`).
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from typing import Any

from pipeline.alerts.config import AlertSettings
from pipeline.alerts.models import Channel, EmailChannel, EntityFilter, KafkaChannel, Subscription, WebhookChannel
from pipeline.alerts.store import SubscriptionStore, compile_query
from pipeline.errors import QueryError
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
        "query", nargs="?", default="", help='query-string syntax over title/summary/text, e.g. "North Korea"'
    )
    p.add_argument("--entity", action="append", default=[], metavar="TYPE:NAME", help="person/organization/location")
    p.add_argument("--source", action="append", default=[], metavar="NAME")
    p.add_argument("--language", action="append", default=[], metavar="CODE")
    p.add_argument("--webhook", action="append", default=[], metavar="URL")
    p.add_argument("--slack", action="append", default=[], metavar="URL", help="webhook with a Slack payload")
    p.add_argument("--email", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--kafka", action="append", default=[], metavar="TOPIC")
    p.add_argument("--no-updates", action="store_true", help="only the first alert per story")
    p = ssub.add_parser("list", help="your subscriptions")
    p.add_argument("--json", action="store_true")
    p = ssub.add_parser("rm", help="delete one of your subscriptions")
    p.add_argument("id")
    p = ssub.add_parser("test", help="recent stories that would have matched")
    p.add_argument("id")
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h, 7d")
    sp = cmd("alerts", cmd_alerts, "the alert delivery log, or run the alerting stage")
    sp.add_argument("action", nargs="?", choices=["log", "run"], default="log")
    sp.add_argument("--owner", help="only this owner's alerts")
    sp.add_argument("--size", type=int, default=20)


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
    out: dict[str, list[str]] = {}
    for spec in specs:
        kind, _, name = spec.partition(":")
        if kind not in ("person", "organization", "location") or not name:
            raise QueryError(f"--entity {spec!r}: expected TYPE:NAME with TYPE person, organization or location")
        out.setdefault(kind, []).append(name.strip('"'))
    return EntityFilter(**out)


def cmd_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from pipeline.search import connect

    store = SubscriptionStore(connect(settings.search), AlertSettings())
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
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            hint = " (give --webhook, --slack, --email or --kafka)" if where == "channels" else ""
            raise QueryError(f"invalid subscription {where}: {first['msg']}{hint}") from None
        store.add(sub)
        print(sub.id)
        return 0
    if action == "list":
        subs = store.list(args.owner)
        for s in subs:
            if args.json:
                print(s.model_dump_json())
            else:
                targets = ", ".join(f"{c.type}" for c in s.channels)
                print(f"{s.id}  {s.name}  {s.query!r}  [{targets}]")
        return 0
    if action == "rm":
        if not store.delete(args.id, args.owner):
            raise QueryError(f"no subscription {args.id} of owner {args.owner}")
        return 0
    found = store.get(args.id, args.owner)
    if found is None:
        raise QueryError(f"no subscription {args.id} of owner {args.owner}")
    for story_id, title in recent_matches(store, settings, found, args.since):
        print(f"{story_id}  {title}")
    return 0


def recent_matches(
    store: SubscriptionStore, settings: Settings, sub: Subscription, since: str
) -> list[tuple[str, str]]:
    """Stories with an original article matching the subscription's query (the articles index has the same
    mapping as the percolator, so the query means the same; source filters see the article's own source)."""
    body: dict[str, Any] = {
        "size": 50,
        "query": {
            "bool": {
                "must": [compile_query(sub)],
                "filter": [{"range": {"@timestamp": {"gte": f"now-{since}"}}}, {"term": {"is_duplicate": False}}],
            }
        },
        "collapse": {"field": "story_id"},
        "sort": [{"@timestamp": "desc"}],
        "_source": ["story_id", "title"],
    }
    hits = store.backend.search(settings.search.indices.articles, body)["hits"]["hits"]
    return [(h["_source"]["story_id"], h["_source"]["title"]) for h in hits]


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.alerts.dispatch import AlertLog
    from pipeline.search import connect

    if args.action == "run":
        from pipeline.alerts.consumer import run

        return run(settings)
    for a in AlertLog(connect(settings.search), AlertSettings()).recent(args.owner, args.size):
        line = {k: a.get(k) for k in ("created_at", "status", "kind", "subscription_name", "title", "attempts")}
        if a.get("last_error"):
            line["last_error"] = a["last_error"]
        print(json.dumps(line, ensure_ascii=False))
    return 0
