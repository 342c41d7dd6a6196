"""The worker's stages and the Kafka consumer loops that run them (`pipeline/app.py` wires them together).

- `batches`: gathering a batch from a consumer, and the offsets that commit it.
- `tag`: the parallel tagging stage (language, entities, story features): Kafka-free `handle(records)`.
- `assign`: the ordered story-assignment stage: Kafka-free `handle(records)` and `upkeep(now)`.
- `state`: the assign stage's tables, logged to a compacted changelog topic and restored from it.
- `loops`: the two delivery guarantees. `AtLeastOnceLoop` commits a batch's offsets only after the broker
  acknowledged every output; `TransactionalLoop` writes outputs, state changes and offsets in one Kafka
  transaction (exactly once).
"""
