"""The one reading of the query text people type (`newsflow search`, subscriptions from the CLI and the API).

The text is tokenized and parsed here, by a small grammar, and refused (one `QueryError` line, never echoing more
than the first 80 characters) unless it is in the safe subset below and within `search.query_limits`. What goes to
the search engine is not the text as typed but a query string rendered from the parse tree, with every reserved
character escaped: the engine's query parser only ever sees words, phrases, trailing-wildcard prefixes, AND, OR,
NOT and parentheses, nested no deeper than the tree.

The subset:

- words (`Korea`, `Jong-un`, `24/7`) and "quoted phrases" (anything but a bare `"` inside; `\\"` is a quote);
- `AND` / `&&`, `OR` / `||`, `NOT` / `!` / a leading `-`, a leading `+` (required, as is every word anyway);
  words side by side must all match; OR binds loosest, then AND, then NOT; `(...)` groups, `max_depth` deep;
- a field prefix from `FIELDS` (`title:Korea`, `summary:"North Korea"`, `title:(Kim OR Putin)`); no other field;
- a trailing wildcard (`korea*`) after at least `min_prefix_chars` letters or digits, at most `max_prefixes`;
- refused: regular expressions (`/.../`), wildcards anywhere else (`*a*`, `te?t`), fuzzy and proximity (`~`),
  boosts (`^`), ranges (`[a TO b]`, `{...}`), backslash escapes outside quotes, control characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import QueryError
from pipeline.settings import QueryLimits

FIELDS = ("title", "summary", "text")  # what a field prefix may name: the article text the indices analyse alike
SHOWN_CHARS = 80  # of an input echoed in an error
_RESERVED = frozenset('+-=&|><!(){}[]^"~*?:\\/')  # escaped in the rendered query string
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*):")
_MODIFIERS = frozenset("+-!")


def shown(text: str, keep: int = SHOWN_CHARS) -> str:
    """An input for an error line: its first `keep` characters, quoted, then "..." and its length if cut."""
    one_line = " ".join(text.split())
    if len(one_line) <= keep:
        return repr(one_line)
    return f"{one_line[:keep]!r}... ({len(text):,} characters)"


# ------------------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Term:
    kind: Literal["word", "phrase", "prefix"]
    text: str  # a word, a phrase's words, or a prefix without its `*`
    field: str | None = None


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Bool:
    op: Literal["AND", "OR"]
    children: tuple[Node, ...]


Node = Term | Not | Bool


@dataclass(frozen=True)
class CheckedQuery:
    """A query within the limits: its tree (None for blank text) and the query string rendered from it."""

    tree: Node | None
    terms: int = 0
    prefixes: int = 0
    depth: int = 0

    def __bool__(self) -> bool:
        return self.tree is not None

    def query_string(self) -> str:
        return "" if self.tree is None else _render(self.tree, top=True)


# ------------------------------------------------------------------------------------------------ tokenizer

_Kind = Literal["(", ")", "AND", "OR", "NOT", "+", "FIELD", "TERM", "END"]


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    at: int  # position in the input (0-based), for the error line
    term: Term | None = None
    field: str | None = None


class _Refused(Exception):
    def __init__(self, reason: str, at: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.at = reason, at


_OPERATORS: dict[str, _Kind] = {"AND": "AND", "&&": "AND", "OR": "OR", "||": "OR", "NOT": "NOT"}


def _tokens(text: str, limits: QueryLimits) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(_Token("(" if c == "(" else ")", i))
            i += 1
        elif c == '"':
            i = _phrase(text, i, out)
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            _bare(text, i, j, out, limits)
            i = j
    return out


def _phrase(text: str, start: int, out: list[_Token]) -> int:
    chars: list[str] = []
    i = start + 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        chars.append(text[i])
        i += 1
    if i >= len(text):
        raise _Refused("unclosed quote", start)
    words = " ".join("".join(chars).split())
    if not words:
        raise _Refused('empty quotes ""', start)
    out.append(_Token("TERM", start, Term("phrase", words)))
    i += 1
    if i < len(text) and text[i] in "~^":
        raise _Refused(_SPECIAL[text[i]], i)
    return i


_SPECIAL = {
    "~": "fuzzy and proximity searches (~) are not supported",
    "^": "boosts (^) are not supported",
    "?": "the ? wildcard is not supported (put text with a ? in quotes)",
    "[": "ranges ([...], {...}) are not supported",
    "]": "ranges ([...], {...}) are not supported",
    "{": "ranges ([...], {...}) are not supported",
    "}": "ranges ([...], {...}) are not supported",
    "\\": "backslash escapes are not supported (put the text in quotes)",
}


def _bare(text: str, start: int, end: int, out: list[_Token], limits: QueryLimits) -> None:
    """One run of text between spaces, parentheses and quotes: an operator, modifiers, a field, a word."""
    run = text[start:end]
    if run in _OPERATORS:
        out.append(_Token(_OPERATORS[run], start))
        return
    i = start
    while i < end and text[i] in _MODIFIERS:
        i += 1
    if i == end:  # only + - !: a modifier of the group or phrase right after it, else punctuation (dropped)
        if end < len(text) and text[end] in '("':
            out.extend(_Token("+" if m == "+" else "NOT", start + k) for k, m in enumerate(run))
        return
    out.extend(_Token("+" if m == "+" else "NOT", start + k) for k, m in enumerate(text[start:i]))
    if match := _FIELD.match(text, i, end):
        name = match.group(1)
        if name not in FIELDS:
            raise _Refused(f"unknown field {name!r} (fields: {', '.join(FIELDS)})", i)
        out.append(_Token("FIELD", i, field=name))
        i = match.end()
        if i == end:
            if end < len(text) and text[end] in '("':
                return
            raise _Refused(f"nothing after {name}:", i)
        if _FIELD.match(text, i, end):
            raise _Refused("a field inside a field", i)
    out.append(_Token("TERM", i, _word(text, i, end, limits)))


def _word(text: str, start: int, end: int, limits: QueryLimits) -> Term:
    word = text[start:end]
    if word.startswith("/"):
        raise _Refused("regular expressions (/.../) are not supported", start)
    for k, c in enumerate(word):
        if c in _SPECIAL:
            raise _Refused(_SPECIAL[c], start + k)
        if unicodedata.category(c) == "Cc":
            raise _Refused("control characters are not allowed", start + k)
    star = word.find("*")
    if star < 0:
        return Term("word", word)
    if star != len(word) - 1:
        raise _Refused("a wildcard (*) is only allowed at the end of a word, e.g. korea*", start + star)
    prefix = word[:-1]
    if sum(ch.isalnum() for ch in prefix) < limits.min_prefix_chars:
        raise _Refused(f"a wildcard needs at least {limits.min_prefix_chars} letters or digits before the *", start)
    return Term("prefix", prefix)


# ------------------------------------------------------------------------------------------------ the parser


class _Parser:
    """Recursive descent over the tokens; only parentheses recurse, and no deeper than `max_depth`."""

    def __init__(self, tokens: list[_Token], limits: QueryLimits, end: int) -> None:
        self.tokens = [*tokens, _Token("END", end)]
        self.pos = 0
        self.limits = limits
        self.terms = self.prefixes = self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def query(self) -> Node:
        node = self.disjunction(0, None)
        token = self.peek()
        if token.kind == ")":
            raise _Refused("unmatched )", token.at)
        return node

    def disjunction(self, depth: int, field: str | None) -> Node:
        children = [self.conjunction(depth, field)]
        while self.peek().kind == "OR":
            self.take()
            children.append(self.conjunction(depth, field))
        return children[0] if len(children) == 1 else Bool("OR", tuple(children))

    def conjunction(self, depth: int, field: str | None) -> Node:
        children = [self.unary(depth, field)]
        while self.peek().kind not in ("OR", ")", "END"):
            if self.peek().kind == "AND":
                self.take()
            children.append(self.unary(depth, field))
        return children[0] if len(children) == 1 else Bool("AND", tuple(children))

    def unary(self, depth: int, field: str | None) -> Node:
        negated = False
        while self.peek().kind in ("NOT", "+"):
            negated ^= self.take().kind == "NOT"  # NOT NOT x is x: a chain of them adds no depth
        node = self.primary(depth, field)
        return Not(node) if negated else node

    def primary(self, depth: int, field: str | None) -> Node:
        token = self.take()
        if token.kind == "FIELD":
            if field is not None:
                raise _Refused("a field inside a field", token.at)
            field = token.field
            token = self.take()
        if token.kind == "TERM":
            assert token.term is not None
            return self.count(Term(token.term.kind, token.term.text, field), token.at)
        if token.kind == "(":
            if depth + 1 > self.limits.max_depth:
                raise _Refused(f"parentheses nested deeper than {self.limits.max_depth}", token.at)
            self.depth = max(self.depth, depth + 1)
            if self.peek().kind == ")":
                raise _Refused("empty parentheses", token.at)
            node = self.disjunction(depth + 1, field)
            closing = self.take()
            if closing.kind != ")":
                raise _Refused("unclosed (", token.at)
            return node
        if token.kind == "END":
            raise _Refused("the query ends with an operator", token.at)
        if token.kind == ")":
            raise _Refused("unmatched )", token.at)
        raise _Refused(f"{token.kind} with nothing before it", token.at)

    def count(self, term: Term, at: int) -> Term:
        self.terms += len(term.text.split()) if term.kind == "phrase" else 1
        if self.terms > self.limits.max_terms:
            raise _Refused(f"more than {self.limits.max_terms} words", at)
        if term.kind == "prefix":
            self.prefixes += 1
            if self.prefixes > self.limits.max_prefixes:
                allowed = f"at most {self.limits.max_prefixes}" if self.limits.max_prefixes else "none allowed"
                raise _Refused(f"too many wildcard terms ({allowed})", at)
        return term


def check_query(text: str, limits: QueryLimits, what: str = "query") -> CheckedQuery:
    """The query if it is in the safe subset and within `limits`, else QueryError: `invalid WHAT 'the first 80
    characters'...: the reason (at character N)`. Blank text is an empty CheckedQuery (no words to match)."""
    try:
        if len(text) > limits.max_chars:
            raise _Refused(f"longer than {limits.max_chars:,} characters")
        tokens = _tokens(text, limits)
        if not tokens:
            return CheckedQuery(None)
        parser = _Parser(tokens, limits, len(text))
        tree = parser.query()
    except _Refused as refused:
        where = f" (at character {refused.at + 1})" if refused.at is not None else ""
        raise QueryError(f"invalid {what} {shown(text)}: {refused.reason}{where}") from None
    return CheckedQuery(tree, parser.terms, parser.prefixes, parser.depth)


def check_values(values: Iterable[str], limits: QueryLimits, what: str) -> None:
    """Filter values (entities, sources, languages) and names: how many and how long."""
    values = list(values)
    if len(values) > limits.max_filters:
        raise QueryError(f"too many {what} ({len(values):,}; at most {limits.max_filters})")
    for value in values:
        if len(value) > limits.max_value_chars:
            raise QueryError(f"{what} {shown(value, 40)} is longer than {limits.max_value_chars} characters")


# ---------------------------------------------------------------------------------------------- rendering


def query_string_clause(checked: CheckedQuery, fields: Sequence[str]) -> dict[str, Any]:
    """The engine's `query_string` query for a checked query over `fields` (boosts allowed, e.g. `title^3`)."""
    return {
        "query_string": {
            "query": checked.query_string(),
            "fields": list(fields),
            "default_operator": "AND",
            "allow_leading_wildcard": False,  # never produced by the renderer; refused by the engine too
        }
    }


def _escape(word: str) -> str:
    if word in ("AND", "OR", "NOT"):  # `title:AND` would be a field and an operator: `title:\AND` is the word
        return f"\\{word}"
    return "".join(f"\\{c}" if c in _RESERVED else c for c in word)


def _render(node: Node, top: bool = False) -> str:
    if isinstance(node, Term):
        field = f"{node.field}:" if node.field else ""
        if node.kind == "phrase":
            body = node.text.replace("\\", "\\\\").replace('"', '\\"')
            return f'{field}"{body}"'
        if node.kind == "prefix":
            return f"{field}{_escape(node.text)}*"
        return f"{field}{_escape(node.text)}"
    if isinstance(node, Not):
        # Always a group of its own: `a OR NOT b` would read as "a, but not b" in Lucene's syntax; the engine
        # adds match-all to a group that only excludes.
        return f"(NOT {_render(node.child)})"
    inner = f" {node.op} ".join(_render(child) for child in node.children)
    return inner if top else f"({inner})"
