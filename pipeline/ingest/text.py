"""Text cleaning for feed fields: HTML fragments to readable text (`html_to_text`), whitespace and control
characters tidied (`collapse`; C1 controls read as the windows-1252 punctuation they are), and the one-line /
word-boundary shortening used for summaries and error messages.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

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


def collapse(text: str) -> str:
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
        return collapse(html)
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # pragma: no cover - html.parser is lenient; belt and braces for odd input
        return collapse(re.sub(r"<[^>]*>", " ", html))
    return collapse("".join(parser.chunks))


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def truncate_words(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, cut at a word boundary, with an ellipsis if cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut.rstrip(" ,;:") + "…"
