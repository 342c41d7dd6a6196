"""OPML import/export of the feed list (what every feed reader exchanges).

Parsing uses the standard library's expat through ElementTree, after refusing any document with a DOCTYPE:
OPML never needs one, and without it there are no entity declarations, so neither external entities nor
entity bombs can be expanded (the same guarantee defusedxml gives, with fewer moving parts). The size is
capped before parsing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator

from pipeline.errors import FeedError
from pipeline.settings import FeedConfig
from pipeline.urls import feed_url_problem

MAX_OPML_BYTES = 20 * 1024 * 1024
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _check_safe(data: bytes) -> None:
    """Refuse what OPML does not need and XML attacks do: DTDs and entity declarations (any encoding)."""
    if len(data) > MAX_OPML_BYTES:
        raise FeedError(f"OPML file larger than {MAX_OPML_BYTES} bytes")
    probes = [data]
    for codec in ("utf-16", "utf-32"):  # a UTF-16/32 document would hide the declaration from a byte regex
        if data[:4].startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
            try:
                probes.append(data.decode(codec).encode("utf-8"))
            except UnicodeDecodeError:
                continue
    if any(_DOCTYPE.search(p) for p in probes):
        raise FeedError("refusing OPML with a DOCTYPE or entity declarations")


def _outlines(node: ET.Element, path: list[str]) -> Iterator[tuple[ET.Element, list[str]]]:
    """Every outline with an xmlUrl, with the titles of the folders (outlines) above it."""
    for child in node:
        if child.tag != "outline":
            continue
        if child.get("xmlUrl") or child.get("xmlurl"):
            yield child, path
        label = (child.get("text") or child.get("title") or "").strip()
        yield from _outlines(child, [*path, label] if label else path)


def _tags(outline: ET.Element, folders: list[str]) -> list[str]:
    """Folder titles plus the `category` attribute (comma separated, "/a/b" paths split into parts)."""
    tags = list(folders)
    for cat in (outline.get("category") or "").split(","):
        tags.extend(part.strip() for part in cat.split("/") if part.strip())
    return list(dict.fromkeys(tags))


def parse_opml(data: bytes, skipped: list[str] | None = None) -> list[FeedConfig]:
    """Feeds from an OPML document; FeedError (one line) when it is not safe, not XML or not OPML. An outline
    whose URL cannot be a feed (not http(s), unparseable) is left out, with the reason put in `skipped`."""
    _check_safe(data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise FeedError(f"not valid OPML: {exc}") from None
    if root.tag != "opml" or (body := root.find("body")) is None:
        raise FeedError("not OPML: no <opml><body>")
    feeds: list[FeedConfig] = []
    seen: set[str] = set()
    for outline, folders in _outlines(body, []):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        name = (outline.get("title") or outline.get("text") or "").strip() or None
        if problem := feed_url_problem(url):  # not http(s), or unparseable: never a feed
            if skipped is not None:
                skipped.append(problem)
            continue
        feeds.append(FeedConfig(url=url, name=name, tags=_tags(outline, folders)))
    return feeds


def export_opml(feeds: Iterable[FeedConfig], title: str = "newsflow feeds") -> str:
    """An OPML 2.0 document (flat; tags go to `category`), escaped by ElementTree."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for feed in feeds:
        attrs = {"type": "rss", "text": feed.name or feed.url, "xmlUrl": feed.url}
        if feed.name:
            attrs["title"] = feed.name
        if feed.tags:
            attrs["category"] = ",".join(feed.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
