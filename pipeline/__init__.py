"""newsflow: RSS/Atom feeds -> Kafka -> Faust (story dedup, entity tagging) -> Elasticsearch/OpenSearch."""

__version__ = "0.1.0"
