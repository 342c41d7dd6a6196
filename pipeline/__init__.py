"""newsflow: RSS/Atom feeds -> Kafka -> stream workers (story dedup, entity tagging) -> Elasticsearch/OpenSearch."""

__version__ = "0.1.0"
