"""Tools around the product: the local Kafka + OpenSearch, process supervision, the demo."""
