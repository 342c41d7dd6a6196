"""Search engine access: one interface (`SearchBackend`), Elasticsearch 8 and OpenSearch 2 implementations."""

from pipeline.search.backend import BulkOutcome, SearchBackend, connect

__all__ = ["BulkOutcome", "SearchBackend", "connect"]
