"""JSON for the search engine, with orjson: the bulk body the indexer sends, and the clients' serializer.

Encoding documents is the largest piece of client-side work in a bulk load, and on a small machine it competes
for CPU with the search engine itself; orjson does it several times faster than the standard library. Anything
orjson refuses (an integer beyond 64 bits, an unknown type) falls back to the standard library with the
clients' usual conversions, so the output is never worse than before, only slower for that one value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from opensearchpy.serializer import JSONSerializer

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# The client's conversions for types JSON has no word for (dates, UUIDs, Decimals, numpy/pandas values).
_default = JSONSerializer().default


def dumps(value: Any) -> bytes:
    """One compact JSON value as UTF-8 bytes; the standard library takes over where orjson refuses."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def encode_action(action: dict[str, Any]) -> bytes:
    """One action's lines of a bulk body, newline-terminated, from the helpers' action format: `_op_type`
    (default "index") names the operation, `_source` is the document (or the update body), every other key
    is request metadata as the engine spells it (`_index`, `_id`, `version`, `version_type`, ...). A
    `delete` has no document line."""
    op = action.get("_op_type", "index")
    meta = dumps({op: {k: v for k, v in action.items() if k != "_op_type" and k != "_source"}})
    if op == "delete":
        return meta + b"\n"
    return b"%b\n%b\n" % (meta, dumps(action.get("_source", {})))


def encode_bulk(actions: list[dict[str, Any]]) -> bytes:
    """The NDJSON body of a bulk request (see `encode_action`)."""
    return b"".join(map(encode_action, actions))


class OpenSearchOrjsonSerializer(JSONSerializer):
    """opensearch-py's JSON serializer with orjson underneath (elasticsearch-py ships its own,
    `elasticsearch.serializer.OrjsonSerializer`). Strings and bytes pass through, as in the original;
    `dumps` returns `str` because the client's bulk helper joins the lines it gets as text."""

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        try:
            return orjson.dumps(data, default=self.default, option=_OPTIONS).decode()
        except (orjson.JSONEncodeError, TypeError):
            return super().dumps(data)

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # raises the client's SerializationError, as before
