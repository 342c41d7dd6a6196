"""Kibana saved objects: import `deploy/kibana/newsflow.ndjson` (data views, saved searches, Lens, dashboard).

Kibana is optional (docker compose runs one; the local stack does not), so its address is not a pipeline
setting: it comes from `--url`, else the `KIBANA_URL` environment variable, else `http://127.0.0.1:5601`.
The import uses Kibana's documented saved-objects API with stable object ids, so running it again with
`overwrite=true` updates the objects in place instead of creating copies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from pipeline.errors import NewsflowError
from pipeline.settings import PROJECT_ROOT

DEFAULT_KIBANA_URL = "http://127.0.0.1:5601"
DEFAULT_NDJSON = PROJECT_ROOT / "deploy" / "kibana" / "newsflow.ndjson"


class KibanaError(NewsflowError):
    """Kibana could not be reached, or it refused (some of) the saved objects."""


def kibana_url(explicit: str | None = None) -> str:
    """`--url`, else `$KIBANA_URL`, else the local default: one place decides, so the CLI and tests agree."""
    return (explicit or os.environ.get("KIBANA_URL") or DEFAULT_KIBANA_URL).rstrip("/")


def import_saved_objects(
    kibana_url: str,
    ndjson_path: Path,
    overwrite: bool = True,
    *,
    timeout_s: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST the NDJSON file to `/api/saved_objects/_import`; returns how many objects Kibana imported.

    Raises KibanaError with one line naming every refused object (Kibana answers 200 with `success: false`
    and a per-object `errors` list when only some objects fail, so the status code alone is not enough).
    `transport` lets tests answer without a Kibana.
    """
    try:
        payload = ndjson_path.read_bytes()
    except OSError as exc:
        raise KibanaError(f"cannot read {ndjson_path}: {exc.strerror or exc}") from None
    url = f"{kibana_url.rstrip('/')}/api/saved_objects/_import"
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.post(
                url,
                params={"overwrite": "true" if overwrite else "false"},
                headers={"kbn-xsrf": "true"},
                files={"file": (ndjson_path.name, payload, "application/ndjson")},
            )
    except httpx.HTTPError as exc:
        raise KibanaError(
            f"Kibana not reachable at {kibana_url} ({type(exc).__name__}); is it running? "
            "(set KIBANA_URL or pass --url)"
        ) from None
    body = _json(response)
    if response.status_code != 200:
        raise KibanaError(f"Kibana at {kibana_url} refused the import: HTTP {response.status_code}: {_message(body)}")
    errors = body.get("errors") or []
    if not body.get("success", False) or errors:
        described = "; ".join(describe_import_error(e) for e in errors) or _message(body)
        raise KibanaError(f"Kibana at {kibana_url} did not import {len(errors)} object(s): {described}")
    return int(body.get("successCount", 0))


def describe_import_error(error: dict[str, Any]) -> str:
    """`lens newsflow-top-people ("Top people"): missing_references (index-pattern newsflow-articles-dv)`."""
    title = (error.get("meta") or {}).get("title") or error.get("title")
    what = f"{error.get('type', '?')} {error.get('id', '?')}" + (f' ("{title}")' if title else "")
    detail = error.get("error") or {}
    reason = str(detail.get("type", "error"))
    missing = detail.get("references") or []
    if missing:
        reason += " (" + ", ".join(f"{r.get('type')} {r.get('id')}" for r in missing) + ")"
    elif detail.get("message") or detail.get("reason"):
        reason += f" ({detail.get('message') or detail.get('reason')})"
    return f"{what}: {reason}"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text.strip()[:200] or response.reason_phrase}
    return body if isinstance(body, dict) else {"message": str(body)[:200]}


def _message(body: dict[str, Any]) -> str:
    return str(body.get("message") or body.get("error") or body)[:300].replace("\n", " ")


def cli_import(url: str | None, ndjson_path: Path | None) -> int:
    """`newsflow kibana import`: one line on success; failures are KibanaError lines printed by the CLI."""
    target = kibana_url(url)
    path = ndjson_path or DEFAULT_NDJSON
    count = import_saved_objects(target, path, overwrite=True)
    print(f"Kibana at {target}: imported {count} saved object(s) from {path} (existing ones overwritten)")
    return 0
