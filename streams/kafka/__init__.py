"""The Kafka runtime: topics, the Faust worker, the projector, tail and replay from Kafka."""
