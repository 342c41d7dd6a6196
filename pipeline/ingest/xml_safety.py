"""XML entity screen: refuse, before parsing, a feed whose prolog declares entities other than a few plain-text ones
(XXE, billion laughs).

Measured with feedparser 6.0.14 / expat 2.5: feedparser strips the DOCTYPE with regular expressions and disables
external general entities, so `file:///etc/passwd` is never read; a billion-laughs payload is stopped by expat's
amplification limit, but only after ~1 s and ~70 MB, and the regex stripping misses declarations that do not start
a line. Hence `screen_entities`, which `parse_feed` runs on every document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.errors import FeedError
from pipeline.ingest.text import one_line

_MAX_SAFE_ENTITIES = 32
_MAX_ENTITY_VALUE = 64
# Plain-text internal entity: <!ENTITY name "text"> with no markup, no references but one character reference.
_SAFE_ENTITY = re.compile(
    r"""<!ENTITY\s+[\w.:-]+\s+(?:"(?:[^"&<%]*|&#x?[0-9a-fA-F]+;)"|'(?:[^'&<%]*|&#x?[0-9a-fA-F]+;)')\s*>"""
)
_ENTITY_DECL = re.compile(r"<!ENTITY\b[^>]*>?")
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


def screen_entities(content: bytes) -> None:
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
                raise FeedError(f"refusing feed: it declares an {kind} XML entity ({one_line(decl, 60)})")
