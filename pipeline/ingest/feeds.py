"""Feed parsing and item normalisation: the pure part of the poller (bytes of a fetched feed -> Articles).

feedparser does the tolerant parsing (RSS 0.9x/1.0/2.0, Atom, broken XML, encoding detection from the XML
declaration, BOMs and the HTTP charset). This module adds what the pipeline needs on top: stable ids,
canonical links, UTC dates that cannot lie in the future, clean text instead of HTML, and a safety screen
against XML entity tricks. `cli_parse` is `newsflow feed parse FILE_OR_URL...`.

XML safety, measured with feedparser 6.0.14 / expat 2.5: feedparser strips the DOCTYPE with regular
expressions and disables external general entities, so `file:///etc/passwd` is never read; a billion-laughs
payload is stopped by expat's amplification limit, but only after ~1 s and ~70 MB, and the regex stripping
misses declarations that do not start a line. We therefore refuse, before parsing, any document that
declares entities other than a few plain-text ones (`_screen_entities`).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import itertools
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import feedparser  # type: ignore[import-untyped,unused-ignore]
import httpx

from pipeline.errors import FeedError
from pipeline.models import Article
from pipeline.urls import canonical_url

if TYPE_CHECKING:
    from pipeline.ingest.poller import Response
    from pipeline.settings import Settings

# A feed clock a little ahead of ours is normal; beyond this a date is wrong and would pin the item on top.
FUTURE_TOLERANCE = timedelta(minutes=15)
# When an item has text but no summary, the summary is the start of the text, cut at a word boundary.
SUMMARY_FROM_TEXT_CHARS = 500
_DATE_KEYS = ("published_parsed", "updated_parsed", "created_parsed")

# ---------------------------------------------------------------------------------------------------------
# XML entity screen
# ---------------------------------------------------------------------------------------------------------

_MAX_SAFE_ENTITIES = 32
_MAX_ENTITY_VALUE = 64
# Plain-text internal entity: <!ENTITY name "text"> with no markup, no references but one character reference.
_SAFE_ENTITY = re.compile(
    r"""<!ENTITY\s+[\w.:-]+\s+(?:"(?:[^"&<%]*|&#x?[0-9a-fA-F]+;)"|'(?:[^'&<%]*|&#x?[0-9a-fA-F]+;)')\s*>"""
)
_ENTITY_DECL = re.compile(r"<!ENTITY\b[^>]*>?")
_PROLOG_PROBE = 64 * 1024  # bytes sampled for encoding detection
_SCREEN_CODECS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_ROOT_START = re.compile(r"<[A-Za-z_:]")


def _decoded_prologs(content: bytes) -> Iterable[str]:
    """The prolog (text before the root element) in every encoding an XML parser might read it in.

    We screen UTF-8/16/32 in both byte orders rather than guess the encoding, so a declaration hidden in
    UTF-16 does not slip by; other encodings used for XML are ASCII-compatible, hence covered by UTF-8. The
    whole document is searched (a long comment could push the DOCTYPE past any fixed window), but only the
    prolog is examined, so an article quoting `<!ENTITY` in CDATA is not refused.
    """
    for codec in _SCREEN_CODECS:
        if "<!ENTITY".encode(codec) not in content:
            continue
        text = _COMMENT.sub("", content.decode(codec, errors="ignore"))
        root = _ROOT_START.search(text)
        yield text[: root.start()] if root else text


def _screen_entities(content: bytes) -> None:
    """Refuse documents declaring external, parameter, nested or many entities (XXE, billion laughs).

    Plain-text entities (`<!ENTITY copy "&#169;">`) are kept: some real feeds use them and they cannot grow.
    """
    for text in _decoded_prologs(content):
        decls = _ENTITY_DECL.findall(text)
        if len(decls) > _MAX_SAFE_ENTITIES:
            raise FeedError(
                f"refusing feed: it declares {len(decls)} XML entities (entity expansion attack?)"
            )
        for decl in decls:
            if not _SAFE_ENTITY.fullmatch(decl) or len(decl) > _MAX_ENTITY_VALUE + 40:
                kind = "external" if re.search(r"\b(SYSTEM|PUBLIC)\b", decl) else "nested or parameter"
                raise FeedError(f"refusing feed: it declares an {kind} XML entity ({_one_line(decl, 60)})")


# ---------------------------------------------------------------------------------------------------------
# HTML to text
# ---------------------------------------------------------------------------------------------------------

_SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "head", "title", "iframe", "object", "svg"}
)
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "aside", "nav", "main", "blockquote", "pre",
        "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "h1", "h2", "h3", "h4", "h5",
        "h6", "figure", "figcaption", "hr", "address", "details", "summary", "form", "fieldset",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"br", "td", "th"})
# C1 control characters never belong in text: they are windows-1252 punctuation (curly quotes, dashes, euro)
# in a feed declared ISO-8859-1, as browsers also read it. Map them back instead of losing them.
_C1_AS_CP1252 = {
    cp: bytes([cp]).decode("cp1252") for cp in range(0x80, 0xA0) if cp not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")


class _TextExtractor(HTMLParser):
    """Collects text, turning block elements into paragraph breaks and dropping non-content elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        elif tag in _LINE_TAGS:
            self.chunks.append("\n" if tag == "br" else " ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP_TAGS:  # <script/> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.chunks.append(data)


def _collapse(text: str) -> str:
    """Collapse runs of whitespace; keep single line breaks and paragraph breaks (blank line) between them."""
    text = _CONTROL.sub("", text.translate(_C1_AS_CP1252)).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        lines = [" ".join(line.split()) for line in para.split("\n")]
        joined = "\n".join(line for line in lines if line)
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def html_to_text(html: str) -> str:
    """Readable text from an HTML fragment: no tags, scripts or styles; entities decoded; tidy whitespace.

    The stdlib parser is enough here (feed fragments are small and feedparser has already sanitised them) and
    it never raises on broken markup, so no extra dependency. Block elements become paragraph breaks, `<br>`
    a line break, table cells a space.
    """
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return _collapse(html)
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # pragma: no cover - html.parser is lenient; belt and braces for odd input
        return _collapse(re.sub(r"<[^>]*>", " ", html))
    return _collapse("".join(parser.chunks))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _truncate_words(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, cut at a word boundary, with an ellipsis if cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut.rstrip(" ,;:") + "…"


# ---------------------------------------------------------------------------------------------------------
# Ids, dates, text fields
# ---------------------------------------------------------------------------------------------------------


def item_id(*, url: str | None, guid: str | None, title: str = "", summary: str = "", feed: str = "") -> str:
    """Stable item id: sha256 of the canonical link, else of feed + GUID, else of feed + title + summary.

    The canonical link comes first, before the GUID, on purpose: GUIDs are often missing, empty, or
    regenerated by a CMS migration or a feed-proxy change while the article stays at the same address, and a
    changed id would re-publish the article downstream. The link, canonicalised (tracking parameters and
    fragments removed), is what identifies the article to readers, and it also gives the same id when the
    same article appears in two feeds. GUIDs and content hashes are namespaced by the feed URL because many
    feeds use GUIDs like "1", "2", ... that are only unique within the feed.
    """
    if url and url.strip():
        basis = "url\0" + canonical_url(url)
    elif guid and guid.strip():
        basis = f"guid\0{feed}\0{guid.strip()}"
    else:
        basis = f"content\0{feed}\0{' '.join(title.split())}\0{' '.join(summary.split())}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


def _struct_to_datetime(value: Any) -> datetime | None:
    """feedparser's *_parsed values are UTC struct_times (naive dates taken as UTC); None if unusable."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm((*tuple(value)[:6], 0, 0, 0)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def normalise_published(parsed: Any, fetched_at: datetime) -> datetime:
    """UTC publication time; missing/unparseable, or later than fetched_at + tolerance -> fetched_at."""
    fetched = fetched_at.replace(tzinfo=UTC) if fetched_at.tzinfo is None else fetched_at.astimezone(UTC)
    when = _struct_to_datetime(parsed)
    if when is None or when > fetched + FUTURE_TOLERANCE:
        return fetched
    return when


def _detail_text(value: str | None, detail: Mapping[str, Any] | None) -> str:
    """Text of a feedparser text construct: HTML is converted, plain text only has whitespace tidied."""
    if not value:
        return ""
    kind = str((detail or {}).get("type") or "")
    if "html" in kind or "<" in value:
        return html_to_text(value)
    return _collapse(value)


def _entry_link(entry: Mapping[str, Any], base: str) -> str | None:
    """The item's web link, absolute and canonical; None when there is no http(s) link."""
    # feedburner:origLink is the publisher's own address behind a feedproxy redirect: the better identity.
    candidates = [entry.get("feedburner_origlink"), entry.get("link")]
    for link in entry.get("links") or []:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            candidates.append(link["href"])
    guid = entry.get("id")
    if entry.get("guidislink") and isinstance(guid, str) and not _is_web(guid.strip()):
        # feedparser made the link from an RSS <guid> (isPermaLink defaults to true), but this GUID is not a
        # URL ("abc", "tag:..."): resolving it against the feed URL would invent an address.
        candidates = [c for c in candidates if c != guid]
    for candidate in candidates:
        if (url := _absolute_web(candidate, base)) is not None:
            return url
    return None


def _entry_text(entry: Mapping[str, Any]) -> str:
    """Full text from content:encoded / Atom content: the longest text of the item's content parts."""
    best = ""
    for part in entry.get("content") or []:
        text = _detail_text(part.get("value"), part)
        if len(text) > len(best):
            best = text
    return best


def _ttl_seconds(feed: Mapping[str, Any]) -> float | None:
    """Suggested refresh interval: RSS <ttl> (minutes) else sy:updatePeriod/updateFrequency."""
    try:
        ttl = float(str(feed.get("ttl", "")).strip())
        if ttl > 0:
            return ttl * 60.0
    except ValueError:
        pass
    period = str(feed.get("sy_updateperiod", "")).strip().lower()
    seconds = {"hourly": 3600, "daily": 86400, "weekly": 604800, "monthly": 2592000, "yearly": 31536000}
    if period in seconds:
        try:
            frequency = max(1.0, float(str(feed.get("sy_updatefrequency", "1")).strip() or 1))
        except ValueError:
            frequency = 1.0
        return seconds[period] / frequency
    return None


def _is_web(url: str | None) -> bool:
    try:
        return urlsplit(url or "").scheme.lower() in ("http", "https")
    except ValueError:
        return False


def _absolute_web(href: Any, base: str) -> str | None:
    """`href` resolved against `base`, canonical, if that gives an http(s) URL."""
    if not isinstance(href, str) or not href.strip():
        return None
    try:
        absolute = urljoin(base, href.strip())
    except ValueError:
        return None
    return canonical_url(absolute) if _is_web(absolute) else None


def _self_base(meta: Mapping[str, Any]) -> str | None:
    """The feed's own absolute address (Atom rel=self / atom:link in RSS), a base for relative links when
    the feed was read from a file rather than fetched."""
    for link in meta.get("links") or []:
        href = link.get("href")
        if link.get("rel") == "self" and isinstance(href, str) and _is_web(href.strip()):
            return href.strip()
    return None


def _host(url: str | None) -> str | None:
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None


# ---------------------------------------------------------------------------------------------------------
# parse_feed
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ParsedFeed:
    """A parsed feed. `bozo` is a one-line warning when feedparser recovered from a problem; `dropped` counts
    items skipped for having neither title, link nor text."""

    title: str | None
    link: str | None
    ttl_s: float | None
    items: list[Article]
    bozo: str | None
    dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def _bozo_message(result: Mapping[str, Any]) -> str | None:
    if not result.get("bozo"):
        return None
    exc = result.get("bozo_exception")
    if exc is None:
        return "feed is not well-formed"
    if isinstance(exc, str):
        return _one_line(exc)
    return _one_line(f"{type(exc).__name__}: {exc}")


_FALLBACK_ENCODINGS = frozenset({"windows-1252", "iso-8859-2"})
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _case_flips(text: str) -> int:
    """How often a lower-case letter is directly followed by an upper-case one (rare in real text)."""
    return sum(a.islower() and b.isupper() for a, b in itertools.pairwise(text))


def _guess_encoding(content: bytes, result: Mapping[str, Any]) -> str | None:
    """A better encoding when feedparser fell back to windows-1252/iso-8859-2 and the result looks wrong.

    feedparser tries the declared/HTTP encoding, then UTF-8, then those two 8-bit fallbacks (it would ask
    chardet, which we do not install). A West-European feed decoded as windows-1252 has isolated accented
    letters between ASCII ones, so it is kept as is; Cyrillic, Greek, Hebrew, Thai or CJK text decoded that
    way shows long runs of non-ASCII characters. Only then do we ask charset_normalizer for the encoding.
    """
    exc = result.get("bozo_exception")
    if type(exc).__name__ != "CharacterEncodingOverride" or result.get("encoding") not in _FALLBACK_ENCODINGS:
        return None
    runs = _NON_ASCII_RUN.findall(content[: _PROLOG_PROBE * 4].decode(result["encoding"], errors="replace"))
    total = sum(map(len, runs))
    if total < 8 or total / len(runs) < 2.5:
        return None
    try:
        import charset_normalizer
    except ImportError:  # optional: without it we keep feedparser's fallback decoding
        return None
    sample = content[: _PROLOG_PROBE * 4]
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return None
    # Short texts often tie (KOI8-R vs windows-1251 read the same bytes as equally "Russian"); the wrong one
    # shows words with an inverted case pattern ("лБЛ РЕТЕЦЙФШ"), so prefer the candidate with fewest.
    top = [
        m
        for m in matches
        if m.chaos <= matches[0].chaos + 0.02 and m.coherence >= matches[0].coherence - 0.02
    ]
    best = min(top, key=lambda m: _case_flips(sample.decode(m.encoding, errors="replace")))
    if best.encoding in {"cp1252", "iso8859_2", "ascii", "utf_8"}:
        return None
    return str(best.encoding)


def _parse_bytes(content: bytes, content_type: str | None) -> Any:
    """feedparser on a byte stream (a bare str/bytes may be taken as a path or URL and opened!).

    No Content-Location is given on purpose: feedparser would then resolve a non-URL RSS <guid> ("12345",
    isPermaLink defaulting to true) into an invented link, and we could no longer tell. Relative links are
    resolved by `_absolute_web` instead (xml:base given as absolute URLs is still applied by feedparser).
    """
    # Without a Content-Type feedparser flags "no Content-type specified"; application/xml without a charset
    # means exactly what a file means: the XML declaration (or BOM, or UTF-8) decides the encoding.
    headers = {"content-type": content_type or "application/xml"}
    return feedparser.parse(
        io.BytesIO(content), response_headers=headers, sanitize_html=True, resolve_relative_uris=True
    )


def parse_feed(
    content: bytes,
    *,
    feed_url: str,
    fetched_at: datetime,
    content_type: str | None = None,
    source: str | None = None,
    base_url: str | None = None,
) -> ParsedFeed:
    """Parse fetched feed bytes into normalised Articles; raise FeedError (one line) if nothing usable.

    `feed_url` is recorded on every Article (the configured URL, stable across redirects); relative links
    resolve against `base_url` (the final URL after redirects) or `feed_url`. `content_type` is the HTTP
    Content-Type header, whose charset feedparser weighs against the XML declaration. An empty but valid
    feed is not an error: it returns no items.
    """
    if not content or not content.strip():
        raise FeedError("empty document")
    _screen_entities(content)
    base = base_url or feed_url
    try:
        result = _parse_bytes(content, content_type)
    except Exception as exc:  # feedparser is tolerant, but a parser crash must stay one line for the caller
        raise FeedError(f"feed parser failed: {_one_line(f'{type(exc).__name__}: {exc}')}") from None
    if (guess := _guess_encoding(content, result)) is not None:
        retry = _parse_bytes(content, f"application/xml; charset={guess}")
        if len(retry.get("entries") or []) >= len(result.get("entries") or []):
            result = retry
            result["bozo"] = 1
            result["bozo_exception"] = f"encoding not declared correctly, detected as {guess}"
    bozo = _bozo_message(result)
    meta = result.get("feed") or {}
    entries = result.get("entries") or []
    if not entries and (not result.get("version") or bozo):
        # A well-formed feed with no items is fine (0 items); a broken or unrecognised document that yields
        # nothing is reported, so a feed that breaks never looks like a quiet one.
        raise FeedError(f"not a feed: {bozo or 'no RSS/Atom structure found'}")

    if not _is_web(base):
        base = _self_base(meta) or base
    title = _detail_text(meta.get("title"), meta.get("title_detail")) or None
    link = _absolute_web(meta.get("link"), base)
    if not _is_web(base) and link:
        base = link  # a feed read from a file without rel=self: relative item links are relative to the site
    outlet = (source or "").strip() or title or _host(link) or _host(feed_url) or feed_url

    items: list[Article] = []
    dropped = 0
    for entry in entries:
        article = _entry_article(entry, feed_url=feed_url, base=base, outlet=outlet, fetched_at=fetched_at)
        if article is None:
            dropped += 1
        else:
            items.append(article)
    if bozo and not items:
        # Broken XML that yields nothing usable is an error, not a quiet feed.
        raise FeedError(f"not a feed: {bozo}")
    warnings = [f"dropped {dropped} item(s) with neither title, link nor text"] if dropped else []
    if bozo:
        warnings.insert(0, f"recovered from: {bozo}")
    return ParsedFeed(
        title=title,
        link=link,
        ttl_s=_ttl_seconds(meta),
        items=items,
        bozo=bozo,
        dropped=dropped,
        warnings=warnings,
    )


def _entry_article(
    entry: Mapping[str, Any], *, feed_url: str, base: str, outlet: str, fetched_at: datetime
) -> Article | None:
    """One feedparser entry -> Article, or None when the entry has nothing to show."""
    url = _entry_link(entry, base)
    title = _detail_text(entry.get("title"), entry.get("title_detail"))
    summary = _detail_text(entry.get("summary"), entry.get("summary_detail"))
    text = _entry_text(entry)
    if text and (not summary or summary == text):
        # feedparser copies content:encoded into the summary when there is no description: keep it short.
        summary = _truncate_words(text, SUMMARY_FROM_TEXT_CHARS)
    if not (title or url or text or summary):
        return None
    guid = entry.get("id") if isinstance(entry.get("id"), str) else None
    # dict.get: FeedParserDict.get("updated_parsed") maps to published_parsed with a DeprecationWarning.
    plain = dict(entry)
    parsed_date = next((plain[k] for k in _DATE_KEYS if plain.get(k)), None)
    return Article(
        id=item_id(url=url, guid=guid, title=title, summary=summary, feed=feed_url),
        feed=feed_url,
        source=outlet,
        url=url,
        title=title,
        summary=summary,
        text=text,
        published=normalise_published(parsed_date, fetched_at),
        fetched_at=fetched_at,
    )


# ---------------------------------------------------------------------------------------------------------
# `newsflow feed parse`
# ---------------------------------------------------------------------------------------------------------


def fetch_feed(url: str, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Response:
    """GET a feed exactly as the poller does (`pipeline.ingest.poller.fetch`: URL safety on every redirect hop,
    timeout, size cap), without conditional headers. `transport` is for tests (httpx.MockTransport)."""
    from pipeline.ingest.poller import fetch, http_client  # the poller imports this module: import when needed

    async def get() -> Response:
        async with http_client(settings.poller, transport) as client:
            return await fetch(client, url, settings.poller)

    return asyncio.run(get())


def _load(source: str, settings: Settings) -> tuple[bytes, str, str | None, str]:
    """(content, feed_url, content_type, base_url) for a file path or an http(s) URL."""
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme in ("http", "https"):
        response = fetch_feed(source, settings)
        return response.content, source, response.headers.get("content-type"), response.final_url
    if scheme:
        raise FeedError(f"unsupported input {source!r}: give a file path or an http(s) URL")
    path = Path(source)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FeedError(f"cannot read {source}: {exc.strerror or exc}") from None
    return content, path.resolve().as_uri(), None, path.resolve().as_uri()


def cli_parse(inputs: list[str], settings: Settings) -> int:
    """`newsflow feed parse FILE_OR_URL...`: one JSON line per Article, or one {"feed", "error"} per bad feed.

    Exit 0 when every input was processed (an unparseable feed is processed: its error was printed), 1 when
    some input could not be read or fetched. Warnings go to stderr as single lines.
    """
    status = 0
    out = sys.stdout
    for source in inputs:
        fetched_at = datetime.now(UTC)
        try:
            content, feed_url, content_type, base = _load(source, settings)
        except FeedError as exc:
            print(json.dumps({"feed": source, "error": str(exc)}, ensure_ascii=False), file=out, flush=True)
            status = 1
            continue
        try:
            parsed = parse_feed(
                content, feed_url=feed_url, fetched_at=fetched_at, content_type=content_type, base_url=base
            )
        except FeedError as exc:
            print(json.dumps({"feed": source, "error": str(exc)}, ensure_ascii=False), file=out, flush=True)
            continue
        except Exception as exc:  # a bug must still be one line, never a traceback, and must not stop the run
            message = f"internal error: {_one_line(f'{type(exc).__name__}: {exc}')}"
            print(json.dumps({"feed": source, "error": message}, ensure_ascii=False), file=out, flush=True)
            status = 1
            continue
        for article in parsed.items:
            out.write(json.dumps(article.model_dump(mode="json"), ensure_ascii=False) + "\n")
        out.flush()
        for warning in parsed.warnings:
            print(f"warning: {source}: {warning}", file=sys.stderr)
    return status
