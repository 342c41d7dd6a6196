"""JSON-lines input for the offline contracts (`newsflow cluster`, `newsflow tag`).

Rows carry `id`, `title` and any of `summary`, `text`, `url`, `published` (ISO 8601), `source`; unknown fields
are ignored. A malformed row stops the run with a BadInputError naming its line: nothing is skipped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import BadInputError, first_problem
from pipeline.models import Article


class InputRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    title: str = ""
    summary: str = ""
    text: str = ""
    url: str | None = None
    published: datetime | None = None
    source: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("title", "summary", "text", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v

    def to_article(self, fetched_at: datetime) -> Article:
        """Rows without a publication time keep `published` unset-like: the fetch time, as the poller does."""
        return Article(
            id=self.id,
            feed="file",
            source=self.source or "unknown",
            url=self.url,
            title=self.title,
            summary=self.summary,
            text=self.text,
            published=self.published or fetched_at,
            fetched_at=fetched_at,
        )


def read_articles(path: Path) -> Iterator[tuple[InputRow, Article]]:
    """Yield (row, article) in file order; raise BadInputError with the line number on the first bad row."""
    fetched_at = datetime.now(UTC)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for lineno, data in enumerate(handle, start=1):
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInputError(f"{path}:{lineno}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise BadInputError(f"{path}:{lineno}: expected a JSON object")
            try:
                row = InputRow.model_validate(raw)
            except ValidationError as exc:
                field, problem = first_problem(exc)
                raise BadInputError(f"{path}:{lineno}: field {field!r}: {problem}") from None
            yield row, row.to_article(fetched_at)


def write_rows(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write JSON lines; returns how many were written."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        n += 1
    return n
